"""First and last frames of every take, captured once, and the provenance of a continuing take
(issue #11, "Frames and provenance").

The pixel checks decode the upstream file here, every frame, with PyAV directly, and compare
the true last frame with what the downstream take started from.
"""

from __future__ import annotations

import hashlib
import io
from fractions import Fraction
from pathlib import Path

import av
import pytest
from django.urls import reverse
from PIL import Image, ImageChops, ImageDraw, ImageStat

from storyboard import frames, generation, house, previz
from storyboard.models import Generation
from storyboard.providers import get_provider
from tests.conftest import client_for
from tests.emulators.fal import FalEmulator
from tests.factories import GenerationFactory, ShotFactory
from tests.helpers import run_to_the_end
from tests.test_remote_generation import use_fal

State = Generation.State
FAST_T2V = "bytedance/seedance-2.0/fast/text-to-video"
LITE_I2V = "fal-ai/bytedance/seedance/v1/lite/image-to-video"
SIZE = (160, 96)


def _picture(index: int) -> Image.Image:
    """A frame nobody could mistake for its neighbour: a colour and a bar that move."""
    image = Image.new("RGB", SIZE, ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256))
    ImageDraw.Draw(image).rectangle((index * 4 % SIZE[0], 10, index * 4 % SIZE[0] + 12, 80),
                                    fill=(255, 255, 255))
    return image


def _clip(path: Path, *, count: int = 40, bframes: bool = True, stamps: list[int] | None = None,
          time_base: Fraction = Fraction(1, 24), audio: bool = False) -> Path:
    """A provider-like H.264 clip: B-frames and one keyframe for the whole clip, unless told."""
    options = {"bf": "3", "g": "250", "keyint_min": "250", "sc_threshold": "0"} if bframes \
        else {"bf": "0", "g": "24"}
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24, options={"preset": "medium", **options})
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        sound = out.add_stream("aac", rate=48_000) if audio else None
        for index in range(count):
            frame = av.VideoFrame.from_image(_picture(index))
            frame.pts = stamps[index] if stamps else index
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


def _true_last(path: Path) -> tuple[str, int]:
    """Decode every frame ourselves; the hash of the final one shown, and how many there were."""
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    last = max(decoded, key=lambda f: f.pts)
    image = last.to_image()
    if last.rotation:
        image = image.rotate(last.rotation, expand=True)
    return frames.pixel_hash(image), len(decoded)


def _hash_of_png(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return frames.pixel_hash(image.convert("RGB"))


# Capturing frames from files


def test_the_clip_really_has_b_frames_and_one_keyframe(tmp_path):
    facts = house.probe(_clip(tmp_path / "b.mp4"))
    assert facts.reordered
    assert facts.keyframe_interval == 40


def test_the_last_frame_of_a_b_frame_clip_is_the_true_last_frame(tmp_path):
    clip = _clip(tmp_path / "b.mp4")
    truth, count = _true_last(clip)
    still = frames.last_still(clip)
    assert still.sha256 == truth
    assert still.index(24) == count - 1
    # …and not the keyframe the seek landed on, nor the frame before the last.
    assert still.sha256 != frames.first_still(clip).sha256


def test_the_last_frame_of_a_variable_rate_clip_is_the_true_last_frame(tmp_path):
    # Stamps in milliseconds with uneven gaps, and a long pause before the final frame.
    stamps = [0, 30, 50, 95, 140, 150, 210, 260, 270, 330, 400, 420, 500, 1400]
    clip = _clip(tmp_path / "vfr.mp4", count=len(stamps), stamps=stamps,
                 time_base=Fraction(1, 1000))
    assert not house.probe(clip).constant_rate
    truth, _ = _true_last(clip)
    still = frames.last_still(clip)
    assert still.sha256 == truth
    assert still.seconds == Fraction(1400, 1000)


def test_the_last_frame_of_a_house_clip_with_audio_is_its_final_frame(tmp_path):
    clip = previz.render(previz.RenderSpec(width=160, height=96, frames=60, prompt="pan left",
                                           seed=3, audio=True), tmp_path / "h.mp4").path
    truth, count = _true_last(clip)
    still = frames.last_still(clip)
    assert (still.sha256, still.index(24), count) == (truth, 59, 60)
    assert frames.timecode(still.seconds, 24) == "00:00:02:11"


def test_normalising_keeps_the_sources_first_and_last_frames_on_the_way(tmp_path):
    clip = _clip(tmp_path / "b.mp4", audio=True)
    ends = house.Ends()
    house.normalize(clip, tmp_path / "house.mp4", ends=ends)
    truth, count = _true_last(clip)
    assert ends.last.sha256 == truth
    assert ends.first.sha256 == frames.first_still(clip).sha256
    # Timed in the house copy: its final slot.
    assert ends.last.seconds == Fraction(count - 1, 24)
    assert ends.last.seconds == frames.last_still(tmp_path / "house.mp4").seconds


def test_a_still_stored_as_png_hashes_like_the_frame(tmp_path):
    still = frames.last_still(_clip(tmp_path / "b.mp4"))
    assert _hash_of_png(still.png()) == still.sha256


@pytest.mark.parametrize(("seconds", "expected"), [
    (0, "00:00:00:00"), (Fraction(119, 24), "00:00:04:23"), (3725 + Fraction(1, 24),
                                                             "01:02:05:01")])
def test_timecodes_count_frames_at_the_clip_rate(seconds, expected):
    assert frames.timecode(seconds, 24) == expected


def test_a_file_without_video_has_no_frames(tmp_path):
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48_000)
        out.mux(stream.encode(None))
    with pytest.raises((frames.FrameError, av.FFmpegError, IndexError)):
        frames.last_still(empty)


# Captured once, when a take completes


def _shot(cast, **kwargs):
    defaults = {"mode": "text", "endpoint": "fal-ai/bytedance/seedance/v1/lite/text-to-video",
                "resolution": "480p", "aspect_ratio": "16:9", "duration": "2",
                "generate_audio": False, "prompt": "Pan left across the harbour."}
    return ShotFactory(project=cast.project, **{**defaults, **kwargs})


def _finish(take: Generation) -> Generation:
    return run_to_the_end(take)


@pytest.mark.django_db
def test_a_local_take_keeps_its_first_and_last_frames(cast):
    take = _finish(generation.start_generation(shot=_shot(cast), user=cast.editor))
    assert take.state == State.COMPLETED
    truth, count = _true_last(Path(take.video.path))
    assert take.last_frame_sha256 == truth
    assert _hash_of_png(take.last_frame.open("rb").read()) == truth
    assert take.last_frame_at == (count - 1) / 24
    assert frames.pixel_hash(take.first_frame_image()) == take.first_frame_sha256
    assert take.first_frame_sha256 == frames.first_still(Path(take.video.path)).sha256
    assert take.last_frame_image().size == (take.width, take.height)


@pytest.mark.django_db
def test_a_continuing_local_take_starts_on_the_upstream_takes_true_last_frame(cast, monkeypatch):
    upstream = _finish(generation.start_generation(shot=_shot(cast), user=cast.editor))
    # A pan: it used to open 15 % zoomed in and off to one side, a visible jump at the joint.
    below = _shot(cast, mode="image", endpoint=LITE_I2V, continues_from=upstream.shot,
                  prompt="Pan left across the boats.")
    # Waiting for its start frame costs nothing: no decoding between the takes.
    calls = []
    monkeypatch.setattr(frames, "last_still", lambda path: calls.append(path))
    take = generation.start_generation(shot=below, user=cast.editor)
    assert take.upstream == upstream
    monkeypatch.undo()
    take = _finish(take)
    assert calls == []
    truth, count = _true_last(Path(upstream.video.path))
    assert take.upstream_frame_sha256 == truth
    assert take.upstream_frame_at == (count - 1) / 24
    # The offline renderer opened the clip on that frame (only the encoder's loss apart), and
    # then moved on from it.
    assert _difference(take.first_frame_image(), upstream.last_frame_image()) < 2.5
    assert _difference(take.last_frame_image(), upstream.last_frame_image()) > 5


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0–255 (a lossy encode of the same picture: 1–2)."""
    assert a.size == b.size
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.fixture
def fal_b_frames(settings, tmp_path):
    clip = _clip(tmp_path / "provider.mp4", count=48, audio=True).read_bytes()
    emulator = FalEmulator(video=clip)
    emulator.tls = True
    with emulator:
        use_fal(settings, emulator)
        yield emulator, clip
    get_provider.cache_clear()


@pytest.mark.django_db
def test_pixel_check_a_provider_clip_with_b_frames_starts_the_next_shot_exactly(
        cast, settings, fal_b_frames, monkeypatch):
    _, clip = fal_b_frames
    # The download is normalised, and its frames are kept in that pass: nothing decodes again.
    monkeypatch.setattr(frames, "last_still", _no_decoding)
    monkeypatch.setattr(frames, "first_still", _no_decoding)
    upstream = _finish(generation.start_generation(
        shot=_shot(cast, endpoint=FAST_T2V, duration="4"), user=cast.editor))
    assert upstream.state == State.COMPLETED, upstream.error
    monkeypatch.undo()
    assert upstream.original.open("rb").read() == clip
    # Our own decode of the delivered file, every frame: its true last frame.
    truth, _ = _true_last(Path(upstream.original.path))
    assert upstream.last_frame_sha256 == truth

    settings.DEFAULT_VIDEO_PROVIDER = "local"
    get_provider.cache_clear()
    below = _shot(cast, mode="image", endpoint=LITE_I2V, continues_from=upstream.shot)
    sent = []
    real_job = generation._job

    def spy(take, inputs):
        files, _urls = inputs
        sent.extend(files["image_url"])
        return real_job(take, inputs)

    monkeypatch.setattr(generation, "_job", spy)
    take = _finish(generation.start_generation(shot=below, user=cast.editor))
    assert take.state == State.COMPLETED, take.error
    assert take.upstream_frame_sha256 == truth
    # The very file the renderer was given has those pixels.
    assert _hash_of_png(sent[0].read_bytes()) == truth


@pytest.mark.django_db
def test_a_take_finished_before_capture_gets_its_frames_once_on_first_need(cast, monkeypatch):
    take = _finish(generation.start_generation(shot=_shot(cast), user=cast.editor))
    truth = take.last_frame_sha256
    Generation.objects.filter(pk=take.pk).update(last_frame="", first_frame="",
                                                 last_frame_sha256="", first_frame_sha256="",
                                                 last_frame_at=None)
    take.refresh_from_db()
    field = generation.chain_frame(take)
    take.refresh_from_db()
    assert (take.last_frame.name, take.last_frame_sha256) == (field.name, truth)
    assert take.first_frame_sha256
    monkeypatch.setattr(frames, "last_still", _no_decoding)
    assert generation.chain_frame(take).name == field.name


def _no_decoding(path):
    raise AssertionError("decoded again")


# Shown to people


@pytest.mark.django_db
def test_the_shot_page_says_what_a_take_started_from(cast):
    upstream = GenerationFactory(shot=_shot(cast, title="Harbour"), last_frame_at=4 + 23 / 24,
                                 last_frame_sha256="ab" * 32)
    below = _shot(cast, continues_from=upstream.shot, mode="image", endpoint=LITE_I2V)
    GenerationFactory(shot=below, upstream=upstream, upstream_frame_at=4 + 23 / 24,
                      upstream_frame_sha256="ab" * 32)
    content = client_for(cast.viewer).get(reverse("sb:shot", args=[below.pk])).content.decode()
    assert f"Started from Harbour, take #{upstream.pk}, 00:00:04:23" in content
    assert "sha256 abababababab…" in content


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["first-frame", "last-frame"])
def test_a_takes_frames_are_served_to_its_team_only(cast, kind):
    take = _finish(generation.start_generation(shot=_shot(cast), user=cast.editor))
    url = reverse("sb:take-file", args=[take.uid, kind])
    response = client_for(cast.viewer).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    field = take.first_frame if kind == "first-frame" else take.last_frame
    assert b"".join(response.streaming_content) == field.open("rb").read()
    assert client_for(cast.outsider).get(url).status_code == 404


@pytest.mark.django_db
def test_a_provider_fetches_the_start_frame_by_its_signed_link(cast, client):
    take = _finish(generation.start_generation(shot=_shot(cast), user=cast.editor))
    url = reverse("sb:input-file", args=[generation.sign_input(take.last_frame.name)])
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(
        take.last_frame.open("rb").read()).hexdigest()
    forged = reverse("sb:input-file", args=[generation.sign_input("teams/1/other.png")])
    assert client.get(forged).status_code == 404


def test_a_phone_clip_recorded_sideways_gives_upright_frames(tmp_path):
    from tests.hostile_files import video_bytes

    clip = tmp_path / "phone.mp4"
    clip.write_bytes(video_bytes(size=(320, 240), rotation=90, audio=None))
    assert frames.last_still(clip).image.size == (240, 320)
    assert frames.first_still(clip).image.size == (240, 320)
    truth, _ = _true_last(clip)
    assert frames.last_still(clip).sha256 == truth
