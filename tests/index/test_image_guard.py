"""The decoding guard: declared sizes read from PNG, GIF and JPEG headers, refused before Pillow decodes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pairsim.index import ImageDecodeError, decode_image
from pairsim.index.image_guard import DeclaredSizeError, check_declared_size, declared_sizes
from pairsim.models import Preprocessing

PREP = Preprocessing(1, 3, image_size=8)


def gif_screen(width: int, height: int) -> bytes:
    """A 35-byte GIF: a ``width`` x ``height`` logical screen and one 1x1 frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)  # 2-colour table
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def gif_with_frame(left: int, top: int, width: int, height: int) -> bytes:
    """A GIF with a 4x4 screen whose one frame declares ``width`` x ``height`` at ``(left, top)``."""
    header = b"GIF89a" + struct.pack("<HHBBB", 4, 4, 0, 0, 0)
    extension = b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # a graphic control extension before the frame
    frame = b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + extension + frame + b";"


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (its pixel data a few bytes of zlib)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """JPEG bytes: an APP0 segment, then a baseline SOF0 declaring ``width`` x ``height``."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def saved(format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(buffer, format)
    return buffer.getvalue()


def test_the_sizes_of_real_files_are_read_from_their_headers() -> None:
    assert declared_sizes(saved("PNG")) == [(20, 12)]
    assert declared_sizes(saved("JPEG")) == [(20, 12)]
    assert declared_sizes(saved("GIF"))[:2] == [(20, 12), (20, 12)]  # the screen, then the frame
    assert declared_sizes(saved("BMP")) is None  # Pillow's lazy open checks the others


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (gif_screen(6000, 6000), "6000x6000"),
        (gif_with_frame(0, 0, 6000, 6000), "6000x6000"),
        (gif_with_frame(60000, 60000, 1, 1), "60001x60001"),  # a tiny frame far outside the screen
        (png_declaring(100_000, 100_000), "100000x100000"),
        (jpeg_declaring(6000, 6000), "6000x6000"),
    ],
    ids=["gif-screen", "gif-frame", "gif-frame-offset", "png-ihdr", "jpeg-sof"],
)
def test_a_declared_size_over_the_limit_is_refused_before_pillow_opens_it(
    data: bytes, declared: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow was asked to open an image its header already refuses")

    monkeypatch.setattr(Image, "open", no_decoder)
    with pytest.raises(ImageDecodeError, match=f"declares {declared} pixels, over the limit"):
        decode_image(data, PREP)


def test_the_35_byte_gif_is_35_bytes() -> None:
    assert len(gif_screen(6000, 6000)) == 35


def test_small_images_of_every_parsed_format_still_decode() -> None:
    for format in ("PNG", "JPEG", "GIF", "BMP"):
        assert decode_image(saved(format), PREP).shape == (1, 8, 8), format
    check_declared_size(gif_screen(100, 100), 10_000)  # at the limit is allowed


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHD", "truncated PNG header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIEND\x00\x00\x00\x01\x00\x00\x00\x01", "truncated PNG header"),
        (b"GIF89a\x10\x00", "truncated GIF header"),
    ],
)
def test_a_truncated_header_names_the_format(data: bytes, words: str) -> None:
    with pytest.raises(DeclaredSizeError, match=words):
        declared_sizes(data)
    with pytest.raises(ImageDecodeError, match=words):
        decode_image(data, PREP)


def test_malformed_rest_is_left_to_the_decoder() -> None:
    # A JPEG cut after its start marker declares nothing; Pillow's message names the problem.
    assert declared_sizes(b"\xff\xd8\xff") == []
    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        decode_image(b"\xff\xd8\xff", PREP)
