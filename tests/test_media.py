"""storyboard.media: what the asset library accepts, and everything it must refuse."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator

import av
import pytest
from django.core.files.uploadedfile import (
    SimpleUploadedFile,
    TemporaryUploadedFile,
    UploadedFile,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile

from storyboard import media
from storyboard.media import MediaError, inspect_upload
from tests import hostile_files
from tests.hostile_files import MB, good, good_files, hostile_corpus

MakeUpload = Callable[[str, bytes], UploadedFile]


class RawNameUpload(SimpleUploadedFile):
    # UploadedFile keeps only the base name (and shortens long ones) when .name is set. media
    # must not depend on that, so the tests hand every name over exactly as given.
    name = None


class RawNameTemporaryUpload(TemporaryUploadedFile):
    name = None


@pytest.fixture
def make_upload() -> Iterator[MakeUpload]:
    """Like Django's upload handlers: in memory up to 2 MB, on disk above."""
    made: list[UploadedFile] = []

    def make(name: str, data: bytes) -> UploadedFile:
        if len(data) <= 2 * MB:
            upload: UploadedFile = RawNameUpload(name, data)
        else:
            upload = RawNameTemporaryUpload(name, "application/octet-stream", len(data), None)
            upload.write(data)
            upload.seek(0)
        made.append(upload)
        return upload

    yield make
    for upload in made:
        upload.close()


def write_temp(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def open_jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()
    return image


def close_to(pixel: tuple[int, ...], colour: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(pixel[:3], colour, strict=True))


# Refusals


def test_the_corpus_is_big_enough() -> None:
    assert len(hostile_corpus()) >= 24


@pytest.mark.parametrize(
    ("name", "data"),
    [pytest.param(name, data, id=case) for case, name, data in hostile_corpus()],
)
def test_it_refuses(make_upload: MakeUpload, name: str, data: bytes) -> None:
    with pytest.raises(MediaError) as caught:
        inspect_upload(make_upload(name, data))
    assert isinstance(caught.value.message, str)
    assert caught.value.message.strip()
    assert str(caught.value) == caught.value.message


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>',
         "“logo.svg” is an SVG drawing; upload a JPEG, PNG or WebP image instead."),
        ("photo.png", hostile_files.encode(hostile_files.noise((64, 64)), "PNG")[:2000],
         "“photo.png” is not a complete image (the file is truncated or damaged)."),
        ("photo.png", hostile_files.encode(Image.new("RGB", (8, 8)), "PNG") + b"<html>",
         "“photo.png” contains extra data after the image, so we can't accept it."),
        ("empty.mp4", b"", "“empty.mp4” is empty (0 bytes); choose the file again and re-upload "
                           "it."),
    ],
)
def test_it_explains_refusals(make_upload: MakeUpload, name: str, data: bytes,
                              message: str) -> None:
    with pytest.raises(MediaError) as caught:
        inspect_upload(make_upload(name, data))
    assert caught.value.message == message


class Unreadable(io.BytesIO):
    def read(self, *args: object) -> bytes:
        raise AssertionError("the content was read")

    def seek(self, *args: object) -> int:
        raise AssertionError("the content was read")


def test_it_refuses_oversize_uploads_before_reading_them() -> None:
    upload = SimpleUploadedFile("clip.mp4", b"")
    upload.file = Unreadable()
    upload.size = int(61.2 * MB)
    with pytest.raises(MediaError) as caught:
        inspect_upload(upload)
    assert caught.value.message == "“clip.mp4” is 61.2 MB; videos can be at most 50 MB."


def test_it_measures_uploads_instead_of_trusting_their_size() -> None:
    upload = SimpleUploadedFile("huge.png", hostile_files.PNG_SIGNATURE + bytes(31 * MB))
    upload.size = 100
    with pytest.raises(MediaError) as caught:
        inspect_upload(upload)
    assert "images can be at most 30 MB" in caught.value.message


def test_it_refuses_unknown_extensions_above_the_largest_limit() -> None:
    upload = SimpleUploadedFile("backup.bin", b"")
    upload.file = Unreadable()
    upload.size = 51 * MB
    with pytest.raises(MediaError) as caught:
        inspect_upload(upload)
    assert caught.value.message == "“backup.bin” is 51.0 MB; files can be at most 50 MB."


def test_it_refuses_names_that_django_would_have_cleaned() -> None:
    # Django keeps "settings.py" from "../../settings.py"; the content still decides.
    upload = SimpleUploadedFile("../../settings.py", good("png"))
    assert upload.name == "settings.py"
    with pytest.raises(MediaError):
        inspect_upload(upload)


def test_truncated_mp4_is_unplayable_for_ffmpeg_itself(tmp_path) -> None:
    data = dict((case, data) for case, _, data in hostile_corpus())["mp4_truncated"]
    path = write_temp(tmp_path, "cut.mp4", data)
    with pytest.raises(av.error.FFmpegError):
        av.open(path).close()
    # And media's own FFmpeg probe refuses it too, not only the box check in front of it.
    with pytest.raises(MediaError):
        media.probe_video("cut.mp4", path)


def test_a_cut_faststart_mp4_fools_ffmpeg_but_not_the_box_check(tmp_path) -> None:
    data = dict((case, data) for case, _, data in hostile_corpus())["mp4_faststart_truncated"]
    path = write_temp(tmp_path, "cut.mp4", data)
    width, height, _duration, _still = media.probe_video("cut.mp4", path)
    assert (width, height) == (320, 240)
    with open(path, "rb") as fp, pytest.raises(MediaError):
        media.check_boxes("cut.mp4", fp, len(data))


def test_pillow_globals_are_left_alone(make_upload: MakeUpload) -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(MediaError):
        inspect_upload(make_upload("bomb.png", hostile_files.png_bomb()))
    assert before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# Names and markup


@pytest.mark.parametrize("name", ["photo.jpg", "  Photo 2 (final).JPEG ", "..hidden.png",
                                  "été – 北京.webp", "a" * 251 + ".png"])
def test_it_keeps_plain_names(name: str) -> None:
    assert media.clean_name(name) == name.strip()


@pytest.mark.parametrize("name", ["", " ", "..", "a/b.png", "a\\b.png", "a\x00.png",
                                  "a\x7f.png", "a\u2028.png", "a\u202e.png", "a" * 256])
def test_it_refuses_names(name: str) -> None:
    with pytest.raises(MediaError):
        media.clean_name(name)


@given(st.text(max_size=300))
def test_names_are_plain_or_refused(name: str) -> None:
    try:
        cleaned = media.clean_name(name)
    except MediaError:
        return
    assert 0 < len(cleaned) <= 255
    assert not set(cleaned) & {"/", "\\", "\x00"}


@pytest.mark.parametrize("data", [b"<script>", b"<SCRIPT src=x>", b"x<svg/onload=x>",
                                  b"<?php\nsystem('id');", b"<!DOCTYPE html>", b"<iframe",
                                  b"<Body onload=x>", b"<html\t"])
def test_it_finds_markup(data: bytes) -> None:
    with pytest.raises(MediaError):
        media.check_no_markup("a.png", data, b"")


@pytest.mark.parametrize("data", [b"<svgz", b"<scripted", b"<?phpx", b"<htmlx", b"body"])
def test_markup_must_be_a_whole_tag_name(data: bytes) -> None:
    # Four bytes like "<svg" turn up by chance in compressed video; a real tag ends after its name.
    media.check_no_markup("a.mp4", data, data)


# Good files


EXPECTED = {
    "jpeg": ("image", "jpg", "image/jpeg", 640, 480),
    "png": ("image", "png", "image/png", 640, 480),
    "webp": ("image", "webp", "image/webp", 640, 480),
    "mp4": ("video", "mp4", "video/mp4", 320, 240),
    "mov": ("video", "mov", "video/quicktime", 320, 240),
    "mp3": ("audio", "mp3", "audio/mpeg", None, None),
    "wav": ("audio", "wav", "audio/wav", None, None),
}


@pytest.mark.parametrize(
    ("case", "name", "data"),
    [pytest.param(case, name, data, id=case) for case, name, data in good_files()],
)
def test_it_accepts(make_upload: MakeUpload, case: str, name: str, data: bytes) -> None:
    upload = make_upload(name, data)
    inspected = inspect_upload(upload)
    kind, ext, content_type, width, height = EXPECTED[case]
    assert (inspected.kind, inspected.ext, inspected.content_type) == (kind, ext, content_type)
    assert (inspected.width, inspected.height) == (width, height)
    assert inspected.original_name == name

    stored = inspected.content.read()
    inspected.content.seek(0)
    assert inspected.size == len(stored)
    assert inspected.sha256 == hashlib.sha256(stored).hexdigest()

    if kind == "image":
        assert inspected.duration is None
        assert Image.open(io.BytesIO(stored)).size == (width, height)
    else:
        assert inspected.content is upload
        assert upload.tell() == 0
        assert stored == data
        assert inspected.duration == pytest.approx(1.0, abs=0.1)
    if kind == "audio":
        assert inspected.thumbnail is None
        assert inspected.poster is None
    else:
        thumbnail = open_jpeg(inspected.thumbnail)
        assert max(thumbnail.size) <= 480
    if kind == "video":
        assert open_jpeg(inspected.poster).size == (width, height)


def test_the_mp3_encoder_is_there() -> None:
    # good_files() skips the MP3 if the bundled FFmpeg ever loses LAME; say so loudly here.
    assert hostile_files.has_mp3_encoder()


def test_it_accepts_videos_already_on_disk(make_upload: MakeUpload) -> None:
    upload = RawNameTemporaryUpload("clip.mp4", "video/mp4", 0, None)
    upload.write(good("mp4"))
    upload.seek(0)
    try:
        inspected = inspect_upload(upload)
    finally:
        upload.close()
    assert (inspected.kind, inspected.width, inspected.height) == ("video", 320, 240)


def test_it_accepts_m4v_as_mp4(make_upload: MakeUpload) -> None:
    inspected = inspect_upload(make_upload("clip.M4V", good("mp4")))
    assert (inspected.ext, inspected.content_type) == ("mp4", "video/mp4")


def test_it_removes_exif_and_applies_orientation(make_upload: MakeUpload) -> None:
    inspected = inspect_upload(make_upload("sideways.jpg", hostile_files.jpeg_with_exif(6)))
    image = Image.open(inspected.content)
    assert image.format == "JPEG"
    assert "exif" not in image.info
    assert not image.getexif()
    assert not image.getexif().get_ifd(0x8825)  # GPS
    assert b"Spy Camera" not in inspected.content.read()
    # Stored 64x32 with red on the left; orientation 6 means "turn 90° clockwise to view".
    assert (inspected.width, inspected.height) == image.size == (32, 64)
    assert close_to(image.getpixel((16, 8)), (255, 0, 0))
    assert close_to(image.getpixel((16, 56)), (0, 0, 255))


def test_it_converts_embedded_colour_profiles_away(make_upload: MakeUpload) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = hostile_files.encode(hostile_files.two_tone(), "JPEG", icc_profile=icc)
    inspected = inspect_upload(make_upload("profiled.jpg", data))
    assert "icc_profile" not in Image.open(inspected.content).info


def test_thumbnails_put_transparency_on_the_dark_background(make_upload: MakeUpload) -> None:
    inspected = inspect_upload(make_upload("badge.png", good("png")))
    thumbnail = open_jpeg(inspected.thumbnail)
    assert thumbnail.size == (480, 360)
    assert close_to(thumbnail.getpixel((5, 5)), (0x11, 0x11, 0x11), slack=6)
    assert close_to(thumbnail.getpixel((240, 180)), (0, 200, 0))
    # The stored PNG itself keeps its transparency.
    assert Image.open(inspected.content).mode == "RGBA"


def test_sixteen_bit_grey_thumbnails_are_not_white(make_upload: MakeUpload) -> None:
    data = hostile_files.encode(Image.new("I;16", (64, 64), 0x8000), "PNG")
    inspected = inspect_upload(make_upload("depth.png", data))
    assert close_to(open_jpeg(inspected.thumbnail).getpixel((3, 3)), (128, 128, 128), slack=4)


def test_make_thumbnail_keeps_the_aspect_ratio_and_never_enlarges() -> None:
    assert open_jpeg(media.make_thumbnail(Image.new("RGB", (2000, 1000)))).size == (480, 240)
    assert open_jpeg(media.make_thumbnail(Image.new("P", (100, 300)))).size == (100, 300)


def test_posters_are_capped_at_1920() -> None:
    assert open_jpeg(media.make_poster(Image.new("RGB", (3840, 2160)))).size == (1920, 1080)


def test_rotated_videos_report_their_display_size(make_upload: MakeUpload) -> None:
    # Stored 320x240 with red on top, flagged to be shown turned 90° counterclockwise.
    data = hostile_files.video_bytes("mp4", audio=None, rotation=90)
    inspected = inspect_upload(make_upload("portrait.mp4", data))
    assert (inspected.width, inspected.height) == (240, 320)
    poster = open_jpeg(inspected.poster)
    assert poster.size == (240, 320)
    assert close_to(poster.getpixel((40, 160)), (255, 0, 0), slack=60)
    assert close_to(poster.getpixel((200, 160)), (0, 0, 255), slack=60)


# Anything at all


MAGIC = [b"", b"\xff\xd8\xff", hostile_files.PNG_SIGNATURE, b"RIFF\x00\x01\x00\x00WEBP",
         b"RIFF\x00\x01\x00\x00WAVE", b"\x00\x00\x00\x18ftypisom", b"\x00\x00\x00\x14ftypqt  ",
         b"ID3\x03\x00\x00\x00\x00\x01\x00", b"\xff\xfb\x90\x00"]
NAMES = ["a.jpg", "a.jpeg", "a.png", "a.webp", "a.mp4", "a.m4v", "a.mov", "a.mp3", "a.wav"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGIC), st.binary(max_size=4096), st.sampled_from(NAMES))
def test_random_bytes_only_ever_raise_media_error(magic: bytes, body: bytes, name: str) -> None:
    refusal: MediaError | None = None
    try:
        inspected = inspect_upload(SimpleUploadedFile(name, magic + body))
    except MediaError as e:
        refusal = e
    if refusal is None:
        assert inspected.kind in ("image", "video", "audio")
    else:
        assert refusal.message
