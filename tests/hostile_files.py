"""Uploads for storyboard.media's tests, all generated in code: no binary fixtures to audit.

`hostile_corpus()` holds files that must be refused and `good_files()` files that must pass,
both as (case_id, filename, bytes). The builders are public so tests can make variations.
"""

from __future__ import annotations

import functools
import io
import os
import random
import struct
import tempfile
import zlib

import av
from PIL import Image, PngImagePlugin

MB = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HTML = b"<html><script>alert(1)</script></html>"
PHP = b"<?php system($_GET['c']); ?>"


# Images


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    """Random RGB pixels: they don't compress, so cutting the file really cuts the image."""
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, data)


def two_tone(size: tuple[int, int] = (640, 480), vertical: bool = False) -> Image.Image:
    """Red on the left (or top) half, blue on the other: shows which way an image was turned."""
    image = Image.new("RGB", size, (0, 0, 255))
    width, height = size
    box = (0, 0, width, height // 2) if vertical else (0, 0, width // 2, height)
    image.paste((255, 0, 0), box)
    return image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + data)
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", crc)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A 1-bit grey PNG of one colour: 400 megapixels in about 50 KB."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then packed pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 1000) for _ in range(height // 1000)]
    parts.append(compressor.compress(row * (height % 1000)))
    parts.append(compressor.flush())
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def jpeg_with_exif(orientation: int = 6) -> bytes:
    """A two-tone JPEG stored sideways, with GPS and camera EXIF that must not survive."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Spy Camera Co"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    return encode(two_tone((64, 32)), "JPEG", exif=exif, quality=95)


def animated_png() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


def fits_file() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    2", "NAXIS1  =                   10",
             "NAXIS2  =                   10", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(2880)


# Video and audio


def video_bytes(fmt: str = "mp4", codec: str = "libx264", audio: str | None = "aac",
                seconds: float = 1.0, size: tuple[int, int] = (320, 240), fps: int = 24,
                rotation: int | None = None, video: bool = True,
                options: dict[str, str] | None = None) -> bytes:
    """A small real video made with PyAV; `options` go to the muxer (e.g. movflags)."""
    # Some muxer options (faststart) rewrite the file, which needs a real file.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"clip.{fmt}")
        with av.open(path, "w", format=fmt, options=options or {}) as out:
            vstream = out.add_stream(codec, rate=fps) if video else None
            astream = out.add_stream(audio, rate=44100) if audio else None
            if vstream is not None:
                vstream.width, vstream.height = size
                vstream.pix_fmt = "yuv420p"
                if rotation is not None:
                    vstream.set_display_rotation(rotation)
                _encode_video(out, vstream, two_tone(size, vertical=True), round(seconds * fps))
            if astream is not None:
                _encode_silence(out, astream, seconds)
        with open(path, "rb") as fp:
            return fp.read()


def _encode_video(out: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                  image: Image.Image, frames: int) -> None:
    for index in range(frames):
        frame = av.VideoFrame.from_image(image)
        frame.pts = index
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def _encode_silence(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                    seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    sample_format = stream.codec_context.format.name
    layout = stream.codec_context.layout.name
    frame_size = stream.codec_context.frame_size or 1024
    for pts in range(0, int(rate * seconds), frame_size):
        frame = av.AudioFrame(format=sample_format, layout=layout, samples=frame_size)
        frame.sample_rate = rate
        frame.pts = pts
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def audio_bytes(fmt: str, codec: str, seconds: float = 1.0) -> bytes:
    return video_bytes(fmt, audio=codec, seconds=seconds, video=False)


def has_mp3_encoder() -> bool:
    return "libmp3lame" in av.codecs_available


def syncsafe(value: int) -> bytes:
    """ID3v2 sizes: four bytes of seven bits each."""
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))


def wav_header_with_garbage() -> bytes:
    garbage = random.Random(7).randbytes(4000)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(garbage)) + b"WAVEfmt " + garbage


# The collections


@functools.cache
def good_files() -> list[tuple[str, str, bytes]]:
    photo = two_tone()
    files = [
        ("jpeg", "photo.jpg", encode(photo, "JPEG", quality=90)),
        ("png", "photo.png", encode(transparent_badge(), "PNG")),
        ("webp", "photo.webp", encode(photo, "WEBP")),
        ("mp4", "clip.mp4", video_bytes("mp4")),
        ("mov", "clip.mov", video_bytes("mov")),
        ("wav", "sound.wav", audio_bytes("wav", "pcm_s16le")),
    ]
    if has_mp3_encoder():
        files.append(("mp3", "sound.mp3", audio_bytes("mp3", "libmp3lame")))
    return files


def transparent_badge() -> Image.Image:
    """640x480 RGBA: a green square in the middle of fully transparent pixels."""
    image = Image.new("RGBA", (640, 480), (0, 0, 0, 0))
    image.paste((0, 200, 0, 255), (220, 140, 420, 340))
    return image


def good(case_id: str) -> bytes:
    return next(data for case, _name, data in good_files() if case == case_id)


@functools.cache
def hostile_corpus() -> list[tuple[str, str, bytes]]:
    png = encode(two_tone((64, 48)), "PNG")
    jpeg = encode(two_tone((64, 48)), "JPEG")
    webp = encode(two_tone((64, 48)), "WEBP")
    mp4 = video_bytes("mp4", audio=None)
    big_png = encode(noise((128, 128)), "PNG")
    big_jpeg = encode(noise((256, 256)), "JPEG", quality=95)
    faststart = video_bytes("mp4", audio=None, options={"movflags": "faststart"})
    php_text = PngImagePlugin.PngInfo()
    php_text.add_text("Comment", PHP.decode())
    webp_riff_too_big = webp[:4] + struct.pack("<I", len(webp) - 8 + 1000) + webp[8:]
    return [
        # Polyglots and markup.
        ("png_html_polyglot", "photo.png", png + HTML),
        ("jpeg_html_after_eoi", "photo.jpg", jpeg + HTML),
        ("webp_with_trailing_data", "photo.webp", webp + b"\x00\x01" * 64),
        ("webp_riff_size_lies", "photo.webp", webp_riff_too_big),
        ("png_php_in_text_chunk", "photo.png", encode(two_tone((64, 48)), "PNG",
                                                       pnginfo=php_text)),
        ("jpeg_php_in_comment", "photo.jpg", encode(two_tone((64, 48)), "JPEG", comment=PHP)),
        ("svg_with_script", "logo.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/'
                                        b'2000/svg"><script>alert(1)</script></svg>'),
        ("svg_named_png", "logo.png", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'),
        ("html_named_png", "page.png", b"<!DOCTYPE html>\n" + HTML),
        ("php_named_jpg_php", "a.jpg.php", PHP),
        ("jpeg_named_jpg_php", "a.jpg.php", jpeg),
        ("php_with_encoded_nul_name", "x.php%00.jpg", PHP),
        # Formats we don't take.
        ("gif", "anim.gif", encode(Image.new("P", (8, 8)), "GIF")),
        ("tiff", "scan.tiff", encode(Image.new("RGB", (8, 8)), "TIFF")),
        ("fits", "nebula.fits", fits_file()),
        ("pdf_named_jpg", "doc.jpg", b"%PDF-1.7\n" + b"0" * 100),
        ("heic_named_jpg", "photo.jpg", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
        ("animated_png", "anim.png", animated_png()),
        ("webm", "clip.webm", video_bytes("webm", codec="libvpx", audio=None)),
        ("mkv_named_mp4", "clip.mp4", video_bytes("matroska", audio=None)),
        ("avi", "clip.avi", video_bytes("avi", codec="mpeg4", audio=None)),
        ("text_named_mp4", "clip.mp4", b"This is not a video.\n" * 20),
        # Right format, wrong name.
        ("png_named_mp4", "x.mp4", png),
        ("mp4_named_mp3", "song.mp3", mp4),
        # Names.
        ("name_with_parent_folders", "../../settings.py", png),
        ("name_with_backslash", "..\\x.png", png),
        ("name_300_chars", "a" * 296 + ".png", png),
        ("name_with_nul", "photo\x00.png", png),
        ("name_with_newline", "photo\n.png", png),
        ("name_with_bidi_override", "photo\u202egnp.png", png),
        ("name_empty", "   ", png),
        # Sizes and pixels.
        ("empty", "empty.png", b""),
        ("png_decompression_bomb", "bomb.png", png_bomb()),
        ("png_too_wide", "wide.png", encode(Image.new("1", (9000, 100)), "PNG")),
        ("oversize_png", "huge.png", PNG_SIGNATURE + bytes(31 * MB)),
        # Damaged.
        ("png_truncated", "photo.png", big_png[: len(big_png) // 2]),
        ("png_missing_iend", "photo.png", big_png[:-12]),
        ("jpeg_truncated", "photo.jpg", big_jpeg[: len(big_jpeg) // 2]),
        ("mp4_truncated", "clip.mp4", mp4[: len(mp4) // 2]),
        ("mp4_faststart_truncated", "clip.mp4", faststart[: len(faststart) * 3 // 4]),
        ("mp4_too_short", "blink.mp4", video_bytes("mp4", audio=None, seconds=1 / 24)),
        ("mp4_without_video", "clip.mp4", video_bytes("mp4", video=False)),
        ("wav_header_with_garbage", "sound.wav", wav_header_with_garbage()),
        ("mp3_id3_claims_100mb", "song.mp3", b"ID3\x03\x00\x00" + syncsafe(100 * MB)
         + b"\xff\xfb\x90\x00" * 100),
    ]


# A video whose header declares a huge picture


def oversized_house_video(width: int = 8192, height: int = 8192, frames: int = 3) -> bytes:
    """An MP4 in house format in every way (H.264 yuv420p, 24 fps, a keyframe a second, no
    B-frames, index first) whose headers declare `width`×`height`.

    It is really a 64×64 clip with its H.264 sequence header and MP4 boxes rewritten: a few KB
    to make, where encoding 8192×8192 takes a second and 700 MiB. Only a decoder would notice,
    and nothing may decode it: the point is that the header alone gets it refused.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "clip.mp4")
        with av.open(path, "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=24,
                                    options={"preset": "ultrafast", "g": "24", "bf": "0"})
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            _encode_video(out, stream, Image.new("RGB", (64, 64), (40, 90, 160)), frames)
        with open(path, "rb") as fp:
            data = fp.read()
    boxes = list(_mp4_boxes(data))
    moov = next(payload for kind, payload in boxes if kind == b"moov")
    rest = b"".join(_mp4_box(kind, payload) for kind, payload in boxes
                    if kind not in (b"ftyp", b"moov"))
    ftyp = _mp4_box(b"ftyp", next(payload for kind, payload in boxes if kind == b"ftyp"))
    # The index moves in front of the media (faststart), so every chunk offset grows by its size.
    size = len(_mp4_box(b"moov", _rewrite_box(b"moov", moov, (width, height), 0)))
    moov = _mp4_box(b"moov", _rewrite_box(b"moov", moov, (width, height), size))
    return ftyp + moov + rest


MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _mp4_boxes(data: bytes):
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        yield kind, data[offset + 8:offset + size]
        offset += size


def _mp4_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", len(payload) + 8, kind) + payload


def _rewrite_box(kind: bytes, payload: bytes, size: tuple[int, int], shift: int) -> bytes:
    def children(data: bytes) -> bytes:
        return b"".join(_mp4_box(k, _rewrite_box(k, p, size, shift))
                        for k, p in _mp4_boxes(data))

    width, height = size
    if kind in MP4_CONTAINERS:
        return children(payload)
    if kind == b"stsd":  # version, flags, entry count, then sample entries
        return payload[:8] + children(payload[8:])
    if kind == b"avc1":  # 78 bytes of visual sample entry, width and height at 24
        head = payload[:24] + struct.pack(">HH", width, height) + payload[28:78]
        return head + children(payload[78:])
    if kind == b"avcC":
        return _avcc_with_size(payload, width, height)
    if kind == b"tkhd" and payload[-8:] != bytes(8):  # the video track's display size
        return payload[:-8] + struct.pack(">II", width << 16, height << 16)
    if kind == b"stco":
        count = struct.unpack(">I", payload[4:8])[0]
        offsets = struct.unpack(f">{count}I", payload[8:8 + 4 * count])
        return payload[:8] + struct.pack(f">{count}I", *(o + shift for o in offsets))
    return payload


def _avcc_with_size(payload: bytes, width: int, height: int) -> bytes:
    assert payload[5] & 0x1F == 1, "one sequence parameter set"
    length = struct.unpack(">H", payload[6:8])[0]
    sps = _sps_with_size(payload[8:8 + length], width, height)
    return payload[:6] + struct.pack(">H", len(sps)) + sps + payload[8 + length:]


def _sps_with_size(nal: bytes, width: int, height: int) -> bytes:
    """An H.264 sequence parameter set with another picture size (in 16-pixel macroblocks)."""
    bits = "".join(f"{byte:08b}" for byte in _unescape(nal[1:]))
    pos = 24  # profile_idc, constraint flags, level_idc

    def ue() -> int:
        nonlocal pos
        zeros = bits.index("1", pos) - pos
        value = int(bits[pos + zeros:pos + 2 * zeros + 1], 2) - 1
        pos += 2 * zeros + 1
        return value

    profile = int(bits[:8], 2)
    ue()  # seq_parameter_set_id
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        assert ue() == 1, "4:2:0"  # chroma_format_idc
        ue(), ue()  # bit depths
        assert bits[pos + 1] == "0", "no scaling matrices"
        pos += 2
    ue()  # log2_max_frame_num_minus4
    order = ue()
    assert order != 1, "picture order type 1 is not handled"
    if order == 0:
        ue()
    ue()  # max_num_ref_frames
    pos += 1  # gaps_in_frame_num_value_allowed_flag
    start = pos
    ue(), ue()  # the size this rewrite replaces
    assert width % 16 == 0
    assert height % 16 == 0
    tail = bits[pos:bits.rindex("1")]  # up to the stop bit
    rbsp = bits[:start] + _ue(width // 16 - 1) + _ue(height // 16 - 1) + tail + "1"
    rbsp += "0" * (-len(rbsp) % 8)
    raw = bytes(int(rbsp[i:i + 8], 2) for i in range(0, len(rbsp), 8))
    return nal[:1] + _escape(raw)


def _ue(value: int) -> str:
    code = f"{value + 1:b}"
    return "0" * (len(code) - 1) + code


def _unescape(data: bytes) -> bytes:
    return data.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(data: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
