"""Validation and inspection of uploads for the asset library.

Every upload is treated as hostile. Its type comes from the bytes (magic numbers, then a real
decode), never from the name or the browser's Content-Type, and the name must agree with it.
Images are decoded and re-encoded, so what we store is pixels we wrote ourselves, without the
uploader's metadata. Videos and audio are probed with FFmpeg (PyAV) from a file on disk, with the
demuxer forced to the one the magic bytes promised.

`inspect_upload` is the entry point; it returns an `Inspected` or raises `MediaError`, whose
`.message` can be shown to the uploader as it is.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import struct
import tempfile
import unicodedata
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import av
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, ImageCms, ImageOps

MB = 1024 * 1024
MAX_BYTES = {"image": 30 * MB, "video": 50 * MB, "audio": 15 * MB}
KIND_PLURALS = {"image": "images", "video": "videos", "audio": "audio files"}

MAX_NAME_LENGTH = 255
MAX_PIXELS = 40_000_000
MAX_IMAGE_SIDE = 8192
MAX_VIDEO_SIDE = 4096
MIN_VIDEO_SECONDS = 0.1
MAX_SECONDS = 600.0
THUMBNAIL_SIZE = (480, 480)
POSTER_MAX_SIDE = 1920
# Transparent pixels land on the app's dark background in (alpha-less) JPEG thumbnails.
BACKGROUND = (0x11, 0x11, 0x11)
SRGB = ImageCms.createProfile("sRGB")

# Markup is looked for at both ends, where a browser or an interpreter would find it.
SCAN_BYTES = 64 * 1024
# Real files yield their first frame within a few packets; garbage can yield none for ever.
MAX_PACKETS = 500
# A fragmented MP4 has two top-level boxes per fragment; this is far beyond any real file.
MAX_BOXES = 100_000

# Only local files are ever opened: no network protocols, no references to other files.
DEMUXER_OPTIONS = {"protocol_whitelist": "file"}

IMAGES_INSTEAD = "upload a JPEG, PNG or WebP image instead"
VIDEOS_INSTEAD = "upload an MP4 or MOV video instead"
AUDIO_INSTEAD = "upload an MP3 or WAV file instead"
ACCEPTED = "upload a JPEG, PNG or WebP image, an MP4 or MOV video, or an MP3 or WAV audio file"


class MediaError(Exception):
    """An upload we refuse; `message` is written for the person who uploaded it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Inspected:
    kind: str
    content_type: str
    ext: str
    content: File
    original_name: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    duration: float | None
    thumbnail: bytes | None
    poster: bytes | None


@dataclass(frozen=True)
class Format:
    kind: str
    label: str
    content_type: str
    ext: str
    extensions: tuple[str, ...]
    pillow: str = ""
    demuxer: str = ""


JPEG = Format("image", "a JPEG image", "image/jpeg", "jpg", ("jpg", "jpeg"), pillow="JPEG")
PNG = Format("image", "a PNG image", "image/png", "png", ("png",), pillow="PNG")
WEBP = Format("image", "a WebP image", "image/webp", "webp", ("webp",), pillow="WEBP")
MP4 = Format("video", "an MP4 video", "video/mp4", "mp4", ("mp4", "m4v"), demuxer="mov")
MOV = Format("video", "a QuickTime (MOV) video", "video/quicktime", "mov", ("mov",), demuxer="mov")
MP3 = Format("audio", "an MP3 audio file", "audio/mpeg", "mp3", ("mp3",), demuxer="mp3")
WAV = Format("audio", "a WAV audio file", "audio/wav", "wav", ("wav",), demuxer="wav")
FORMATS = (JPEG, PNG, WEBP, MP4, MOV, MP3, WAV)
EXTENSION_KINDS = {ext: f.kind for f in FORMATS for ext in f.extensions}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# QuickTime files from before the `ftyp` box start straight with one of these atoms.
QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif",
               b"avis"}
M4A_BRANDS = {b"M4A ", b"M4B ", b"M4P "}

# Formats people do try to upload, so the refusal can say what the file is.
REFUSED_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"GIF87a", "a GIF image", IMAGES_INSTEAD + " (or an MP4 video for animations)"),
    (b"GIF89a", "a GIF image", IMAGES_INSTEAD + " (or an MP4 video for animations)"),
    (b"II*\x00", "a TIFF image", IMAGES_INSTEAD),
    (b"MM\x00*", "a TIFF image", IMAGES_INSTEAD),
    (b"SIMPLE  =", "a FITS astronomy image", IMAGES_INSTEAD),
    (b"%PDF-", "a PDF document", IMAGES_INSTEAD),
    (b"\x1aE\xdf\xa3", "a WebM or Matroska video", VIDEOS_INSTEAD),
    (b"OggS", "an Ogg media file", AUDIO_INSTEAD),
    (b"fLaC", "a FLAC audio file", AUDIO_INSTEAD),
    (b"PK\x03\x04", "a ZIP archive", ACCEPTED),
    (b"\x7fELF", "a program", ACCEPTED),
)

# Tags a browser would act on and PHP's opening tag. Each must end where the real tag name ends
# (whitespace, "/" or ">"), so four random bytes in a compressed stream rarely spell one.
MARKUP = re.compile(
    rb"<(?:script|html|svg|iframe|body|!doctype)(?=[\s/>]|\Z)|<\?php(?=\s|\Z)", re.IGNORECASE
)
SVG = re.compile(rb"<svg(?=[\s/>]|\Z)", re.IGNORECASE)
# Bidirectional overrides make "photo\u202egnp.exe" display as "photoexe.png".
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


# File names


def clean_name(raw: str | None) -> str:
    """The uploaded name, trimmed, or MediaError if it is not a plain file name."""
    name = (raw or "").strip()
    if not name:
        raise MediaError("The file has no name; name it like “photo.jpg” and upload it again.")
    if len(name) > MAX_NAME_LENGTH:
        raise MediaError(
            f"The file name is {len(name)} characters long; names can be at most "
            f"{MAX_NAME_LENGTH} characters. Rename the file and upload it again."
        )
    if any(_is_control(char) for char in name):
        raise MediaError("The file name contains control characters; rename the file and "
                         "upload it again.")
    if "/" in name or "\\" in name or name.strip(".") == "":
        raise MediaError(f"“{name}” is a path, not a file name; upload the file by its own "
                         "name, without folders or “..”.")
    return name


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in BIDI_CONTROLS


def extension(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


# Sizes


def size_label(size: int) -> str:
    # Round up, so a file just over a limit never reads as "30.0 MB; at most 30 MB".
    return f"{math.ceil(size * 10 / MB) / 10:.1f} MB"


def check_size(name: str, kind: str | None, size: int) -> None:
    if size <= 0:
        raise MediaError(f"“{name}” is empty (0 bytes); choose the file again and re-upload it.")
    limit = MAX_BYTES[kind] if kind else max(MAX_BYTES.values())
    if size > limit:
        plural = KIND_PLURALS[kind] if kind else "files"
        raise MediaError(
            f"“{name}” is {size_label(size)}; {plural} can be at most {limit // MB} MB."
        )


def measure(upload: UploadedFile) -> int:
    """The real size in bytes; `.size` is only what the upload handler counted."""
    upload.seek(0, os.SEEK_END)
    size = upload.tell()
    upload.seek(0)
    return size


def read_ends(upload: UploadedFile, size: int) -> tuple[bytes, bytes]:
    upload.seek(0)
    head = upload.read(SCAN_BYTES)
    upload.seek(max(0, size - SCAN_BYTES))
    tail = upload.read(SCAN_BYTES)
    upload.seek(0)
    return head, tail


def sha256_hex(upload: UploadedFile) -> str:
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


# Telling formats apart


def detect_format(name: str, head: bytes, size: int) -> Format:
    """The accepted format the leading bytes announce, or MediaError saying what the file is."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(PNG_SIGNATURE):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[:4] == b"RIFF" and head[8:11] == b"AVI":
        raise MediaError(f"“{name}” is an AVI video; {VIDEOS_INSTEAD}.")
    if head[4:8] == b"ftyp":
        return _iso_format(name, head[8:12])
    if head[4:8] in QUICKTIME_ATOMS:
        return MOV
    if head.startswith(b"ID3"):
        _check_id3(name, head, size)
        return MP3
    if _is_mpeg_audio_sync(head):
        return MP3
    raise MediaError(_describe_refused(name, head))


def _iso_format(name: str, brand: bytes) -> Format:
    # MP4, MOV, HEIC and M4A share one box structure; the major brand tells them apart.
    if brand == b"qt  ":
        return MOV
    if brand in HEIF_BRANDS:
        raise MediaError(f"“{name}” is a HEIC or AVIF image; {IMAGES_INSTEAD}.")
    if brand in M4A_BRANDS:
        raise MediaError(f"“{name}” is an M4A audio file; {AUDIO_INSTEAD}.")
    return MP4


def _check_id3(name: str, head: bytes, size: int) -> None:
    # The tag's size is four 7-bit bytes. One that claims to end past the file leaves no audio,
    # and FFmpeg would skip through it looking for some; refuse from the header alone.
    if len(head) < 10 or any(b & 0x80 for b in head[6:10]):
        raise MediaError(incomplete_message(name, "audio file"))
    tag_size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    footer = 10 if head[5] & 0x10 else 0
    if 10 + tag_size + footer >= size:
        raise MediaError(incomplete_message(name, "audio file"))


def _is_mpeg_audio_sync(head: bytes) -> bool:
    # 11 set bits of frame sync, then a version that is not "reserved" and a layer that is not
    # "reserved" (ADTS AAC streams use that one, with the same sync bits).
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    return (head[1] >> 3) & 3 != 1 and (head[1] >> 1) & 3 != 0


def _describe_refused(name: str, head: bytes) -> str:
    for magic, what, instead in REFUSED_SIGNATURES:
        if head.startswith(magic):
            return f"“{name}” is {what}; {instead}."
    if SVG.search(head):
        return f"“{name}” is an SVG drawing; {IMAGES_INSTEAD}."
    if MARKUP.search(head):
        return f"“{name}” is a web page or script, not an image, video or audio file."
    return f"“{name}” is not a kind of file we accept; {ACCEPTED}."


def check_extension(name: str, fmt: Format) -> None:
    ext = extension(name)
    if ext in fmt.extensions:
        return
    ending = f"its name ends in “.{ext}”" if ext else "its name has no extension"
    raise MediaError(
        f"“{name}” is {fmt.label}, but {ending}; rename it to end in .{fmt.ext} and upload it "
        "again."
    )


def check_no_markup(name: str, head: bytes, tail: bytes) -> None:
    # A file that is also a web page or a script (a polyglot) is an attack, whatever else it is.
    if MARKUP.search(head) or MARKUP.search(tail):
        raise MediaError(f"“{name}” contains web page or script code, so we can't accept it.")


def incomplete_message(name: str, what: str) -> str:
    return f"“{name}” is not a complete {what} (the file is truncated or damaged)."


# Entry point


def inspect_upload(upload: UploadedFile) -> Inspected:
    """Check an upload against the library's rules and prepare what to store."""
    name = clean_name(upload.name)
    kind_by_name = EXTENSION_KINDS.get(extension(name))
    # The declared size lets us refuse a huge file before reading a byte of it.
    if upload.size:
        check_size(name, kind_by_name, upload.size)
    size = measure(upload)
    check_size(name, kind_by_name, size)
    head, tail = read_ends(upload, size)
    fmt = detect_format(name, head, size)
    check_extension(name, fmt)
    check_size(name, fmt.kind, size)
    if fmt.kind == "image":
        return inspect_image(upload, name, fmt)
    # Before any FFmpeg code sees the file.
    check_no_markup(name, head, tail)
    if fmt.kind == "video":
        return inspect_video(upload, name, fmt, size)
    return inspect_audio(upload, name, fmt, size)


# Images


def inspect_image(upload: UploadedFile, name: str, fmt: Format) -> Inspected:
    upload.seek(0)
    data = upload.read()
    upload.seek(0)
    image = decode_image(name, fmt, data)
    check_image_end(name, fmt, data)
    check_no_markup(name, data[:SCAN_BYTES], data[-SCAN_BYTES:])
    encoded = encode_image(image, fmt)
    return Inspected(
        kind="image",
        content_type=fmt.content_type,
        ext=fmt.ext,
        content=ContentFile(encoded, name=f"original.{fmt.ext}"),
        original_name=name,
        size=len(encoded),
        sha256=hashlib.sha256(encoded).hexdigest(),
        width=image.width,
        height=image.height,
        duration=None,
        thumbnail=make_thumbnail(image),
        poster=None,
    )


def decode_image(name: str, fmt: Format, data: bytes) -> Image.Image:
    """Fully decoded pixels, turned upright by the EXIF orientation."""
    try:
        with warnings.catch_warnings():
            # Don't touch Image.MAX_IMAGE_PIXELS: other code shares it. Locally, a warning-level
            # bomb is an error too. (Filters are process-wide, so a concurrent upload can undo
            # this one; the 40-megapixel check below is what holds either way.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"])
            check_image_format(name, fmt, image)
            check_image_size(name, image.width, image.height)
            image.load()
            return ImageOps.exif_transpose(image)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaError(
            f"“{name}” has too many pixels to open safely; images can be at most "
            f"{MAX_PIXELS // 1_000_000} megapixels."
        ) from e
    except Exception as e:
        # Decoders report hostile input with whatever exception they happen to hit.
        raise MediaError(incomplete_message(name, "image")) from e


def check_image_format(name: str, fmt: Format, image: Image.Image) -> None:
    # Multi-picture JPEGs (MPO, from some phones) are JPEGs whose first picture is the photo.
    found = "JPEG" if image.format == "MPO" else image.format
    if found != fmt.pillow:
        raise MediaError(incomplete_message(name, "image"))
    if fmt.pillow != "JPEG" and getattr(image, "is_animated", False):
        raise MediaError(f"“{name}” is an animated image; {VIDEOS_INSTEAD}.")


def pixels(width: int, height: int) -> str:
    return f"{width}\u00d7{height} pixels"


def check_image_size(name: str, width: int, height: int) -> None:
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise MediaError(
            f"“{name}” is {pixels(width, height)}; images can be at most {MAX_IMAGE_SIDE} "
            "pixels on each side."
        )
    if width * height > MAX_PIXELS:
        raise MediaError(
            f"“{name}” is {pixels(width, height)} ({width * height / 1_000_000:.1f} "
            f"megapixels); images can be at most {MAX_PIXELS // 1_000_000} megapixels."
        )


def check_image_end(name: str, fmt: Format, data: bytes) -> None:
    """Refuse bytes after the image's own end: that is where polyglots keep their payload."""
    if fmt is PNG:
        end = png_end(data)
        if end is None:
            raise MediaError(incomplete_message(name, "image"))
    elif fmt is WEBP:
        # The RIFF header says how long the file is.
        end = 8 + struct.unpack("<I", data[4:8])[0]
        if end > len(data):
            raise MediaError(incomplete_message(name, "image"))
    else:
        # A JPEG can hold embedded thumbnails with their own end markers, so only the tail of
        # the file can be checked: after padding, it must end with the last end-of-image marker.
        end = len(data) if data.rstrip(b"\x00\t\n\r ").endswith(b"\xff\xd9") else 0
    if end != len(data):
        raise MediaError(f"“{name}” contains extra data after the image, so we can't accept it.")


def png_end(data: bytes) -> int | None:
    """The offset just past the IEND chunk, or None if the chunks run past the file."""
    offset = len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunk_type = data[offset + 4 : offset + 8]
        offset += 12 + length
        if offset > len(data):
            return None
        if chunk_type == b"IEND":
            return offset
    return None


def encode_image(image: Image.Image, fmt: Format) -> bytes:
    """The pixels in the same format, with no metadata of the uploader's."""
    image = to_srgb(image)
    # Only transparency survives: EXIF (GPS, camera serials), XMP, text chunks and the rest go.
    kept = image.info.get("transparency")
    image.info = {} if kept is None else {"transparency": kept}
    out = io.BytesIO()
    if fmt is JPEG:
        if image.mode not in ("L", "RGB", "CMYK"):
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=92)
    elif fmt is PNG:
        image.save(out, "PNG", optimize=True)
    else:
        image.save(out, "WEBP", quality=90)
    return out.getvalue()


def to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded colour profile, so it can be dropped without the colours changing.

    The profile is uploader-chosen bytes we would otherwise store verbatim; converting also
    turns print CMYK into the RGB screens expect.
    """
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, profile, SRGB, outputMode=mode)
    except Exception:
        # A broken profile only costs colour accuracy; the pixels are still fine as they are.
        return image
    return converted if converted is not None else image


def flatten(image: Image.Image) -> Image.Image:
    """RGB pixels for a JPEG: 16-bit grey scaled down, transparency on the dark background."""
    if image.mode.startswith("I") or image.mode == "F":
        # Plain convert() would clip 16-bit values to white.
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def to_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    flatten(image).save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_thumbnail(image: Image.Image) -> bytes:
    """A JPEG that fits in 480 by 480 pixels, same aspect ratio, never enlarged."""
    thumb = flatten(image)
    thumb.thumbnail(THUMBNAIL_SIZE)
    return to_jpeg(thumb)


def make_poster(image: Image.Image) -> bytes:
    """A full-size JPEG still, at most 1920 px on its long side."""
    poster = flatten(image)
    poster.thumbnail((POSTER_MAX_SIDE, POSTER_MAX_SIDE))
    return to_jpeg(poster, quality=88)


# Video and audio


@contextmanager
def local_path(upload: UploadedFile) -> Iterator[str]:
    """A path FFmpeg can open: big uploads already live on disk, small ones are written out."""
    if hasattr(upload, "temporary_file_path"):
        yield upload.temporary_file_path()
        return
    with tempfile.NamedTemporaryFile(suffix=".upload") as tmp:
        for chunk in upload.chunks():
            tmp.write(chunk)
        tmp.flush()
        upload.seek(0)
        yield tmp.name


def inspect_video(upload: UploadedFile, name: str, fmt: Format, size: int) -> Inspected:
    with local_path(upload) as path:
        with open(path, "rb") as fp:
            check_boxes(name, fp, size)
        width, height, duration, still = probe_video(name, path)
    return Inspected(
        kind="video",
        content_type=fmt.content_type,
        ext=fmt.ext,
        content=upload,
        original_name=name,
        size=size,
        sha256=sha256_hex(upload),
        width=width,
        height=height,
        duration=duration,
        thumbnail=make_thumbnail(still),
        poster=make_poster(still),
    )


def check_boxes(name: str, fp: IO[bytes], size: int) -> None:
    """Every top-level MP4/QuickTime box must fit inside the file.

    FFmpeg happily shows the first frame of a file whose end is missing (when the index comes
    first), so a cut-off upload is caught here instead.
    """
    offset = 0
    for _ in range(MAX_BOXES):
        if offset + 8 > size:
            return
        fp.seek(offset)
        header = fp.read(16)
        (box_size,) = struct.unpack(">I", header[:4])
        if box_size == 0:
            return  # "extends to the end of the file"
        if box_size == 1:
            if len(header) < 16:
                break
            (box_size,) = struct.unpack(">Q", header[8:16])
        if box_size < 8 or offset + box_size > size:
            break
        offset += box_size
    raise MediaError(incomplete_message(name, "video"))


def probe_video(name: str, path: str) -> tuple[int, int, float, Image.Image]:
    """Width and height as displayed, duration, and the first frame."""
    try:
        with av.open(path, format="mov", options=DEMUXER_OPTIONS) as container:
            if not any(family in container.format.name for family in ("mp4", "mov")):
                raise MediaError(f"“{name}” is not an MP4 or MOV video; {VIDEOS_INSTEAD}.")
            if not container.streams.video:
                raise MediaError(f"“{name}” has no video in it; {VIDEOS_INSTEAD}.")
            stream = container.streams.video[0]
            check_video_size(name, stream.codec_context.width, stream.codec_context.height)
            duration = media_duration(container, stream)
            check_duration(name, "video", duration)
            frame = first_frame(container, stream)
            # Phones record portrait video sideways and say how to turn it for display.
            still = frame.to_image().rotate(frame.rotation, expand=True)
            check_video_size(name, still.width, still.height)
    except MediaError:
        raise
    except Exception as e:
        # FFmpegError and its subclasses, and anything else a decoder trips over.
        raise MediaError(f"“{name}” is not a playable video (the file is damaged or uses an "
                         "encoding we can't read).") from e
    return still.width, still.height, duration, still


def check_video_size(name: str, width: int, height: int) -> None:
    if width > MAX_VIDEO_SIDE or height > MAX_VIDEO_SIDE:
        raise MediaError(
            f"“{name}” is {pixels(width, height)}; videos can be at most {MAX_VIDEO_SIDE} "
            "pixels on each side."
        )


def media_duration(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    """Seconds, from the container or else the stream; a file with neither is not playable."""
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    raise ValueError("no duration")


def check_duration(name: str, kind: str, seconds: float) -> None:
    if kind == "video" and seconds < MIN_VIDEO_SECONDS:
        raise MediaError(f"“{name}” is only {seconds:.2f} seconds long; videos must be at "
                         f"least {MIN_VIDEO_SECONDS} seconds.")
    if seconds > MAX_SECONDS:
        raise MediaError(f"“{name}” is {seconds / 60:.1f} minutes long; {KIND_PLURALS[kind]} "
                         f"can be at most {MAX_SECONDS / 60:.0f} minutes.")


def first_frame(
    container: av.container.InputContainer, stream: av.stream.Stream
) -> av.frame.Frame:
    for count, packet in enumerate(container.demux(stream)):
        if count >= MAX_PACKETS:
            break
        for frame in packet.decode():
            return frame
    raise ValueError("no decodable frame")


def inspect_audio(upload: UploadedFile, name: str, fmt: Format, size: int) -> Inspected:
    with local_path(upload) as path:
        duration = probe_audio(name, path, fmt)
    return Inspected(
        kind="audio",
        content_type=fmt.content_type,
        ext=fmt.ext,
        content=upload,
        original_name=name,
        size=size,
        sha256=sha256_hex(upload),
        width=None,
        height=None,
        duration=duration,
        thumbnail=None,
        poster=None,
    )


def probe_audio(name: str, path: str, fmt: Format) -> float:
    try:
        with av.open(path, format=fmt.demuxer, options=DEMUXER_OPTIONS) as container:
            if not container.streams.audio:
                raise MediaError(f"“{name}” has no audio in it; {AUDIO_INSTEAD}.")
            stream = container.streams.audio[0]
            check_audio_codec(name, fmt, stream.codec_context.name)
            duration = media_duration(container, stream)
            check_duration(name, "audio", duration)
            first_frame(container, stream)
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"“{name}” is not a playable audio file (the file is damaged or uses "
                         "an encoding we can't read).") from e
    return duration


def check_audio_codec(name: str, fmt: Format, codec: str) -> None:
    # What a browser plays: MPEG layer 3 in .mp3, plain PCM in .wav.
    playable = codec.startswith("mp3") if fmt is MP3 else codec.startswith("pcm_")
    if not playable:
        raise MediaError(f"“{name}” uses an audio encoding ({codec}) browsers can't play; "
                         f"{AUDIO_INSTEAD}.")
