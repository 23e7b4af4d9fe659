"""The decoding guard: an image's declared dimensions, read from its header bytes before any decoder runs.

A decoder allocates what the header declares: a 35-byte GIF declaring a 6000x6000 screen costs half
a gigabyte once Pillow composes its first frame. :func:`check_declared_size` reads the sizes that PNG
(IHDR), GIF (logical screen and every frame's image descriptor) and JPEG (SOF markers) declare, with
no decoding and no allocation beyond the bytes given, and refuses an image over a pixel limit. Other
formats are checked by the caller on Pillow's lazy ``Image.open`` size, which reads only the header.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless, ...): all of 0xC0-0xCF but
#: DHT (0xC4), JPG (0xC8) and DAC (0xCC), which share the range without declaring a frame.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers that stand alone, without a length field (TEM, RSTn, SOI, EOI).
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


class DeclaredSizeError(ValueError):
    """An image whose header declares too many pixels, or a header too short to say."""


def declared_sizes(data: bytes) -> list[tuple[int, int]] | None:
    """Every ``(width, height)`` the header of ``data`` declares; ``None`` for formats not parsed here.

    PNG: the IHDR size. GIF: the logical screen, then each frame's extent (its offset plus its size,
    as the canvas a decoder would need). JPEG: each SOF frame. Parsing stops at the first byte that
    does not fit the format: a truncated or malformed rest is the decoder's to report.

    Raises:
        DeclaredSizeError: the bytes start as PNG, GIF or JPEG but end before the size is declared.

    Example:
        >>> gif = b"GIF89a" + (6000).to_bytes(2, "little") * 2 + bytes(3) + b";"
        >>> declared_sizes(gif)
        [(6000, 6000)]
        >>> declared_sizes(b"BM....") is None
        True
    """
    if data.startswith(PNG_SIGNATURE):
        return [_png_size(data)]
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_sizes(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_sizes(data)
    return None


def check_declared_size(data: bytes, max_pixels: int) -> None:
    """Refuse ``data`` when any size its header declares has more than ``max_pixels`` pixels.

    Raises:
        DeclaredSizeError: naming the declared size and the limit, or the truncated header.

    Example:
        >>> gif = b"GIF89a" + (6000).to_bytes(2, "little") * 2 + bytes(3) + b";"
        >>> check_declared_size(gif, 25_000_000)
        Traceback (most recent call last):
        ...
        pairsim.index.image_guard.DeclaredSizeError: image declares 6000x6000 pixels, over the limit of 25,000,000
    """
    for width, height in declared_sizes(data) or []:
        if width * height > max_pixels:
            raise DeclaredSizeError(f"image declares {width}x{height} pixels, over the limit of {max_pixels:,}")


def _png_size(data: bytes) -> tuple[int, int]:
    # The signature (8), then the first chunk, which must be IHDR: length (4), type (4), width, height.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise DeclaredSizeError("truncated PNG header (no IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif_sizes(data: bytes) -> list[tuple[int, int]]:
    if len(data) < 13:
        raise DeclaredSizeError("truncated GIF header (no logical screen descriptor)")
    width, height, flags = struct.unpack("<HHB", data[6:11])
    sizes = [(width, height)]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    while position < len(data):
        block = data[position]
        if block == 0x2C:  # image descriptor: left, top, width, height, flags (then the frame's data)
            if position + 10 > len(data):
                break
            left, top, w, h, local = struct.unpack("<HHHHB", data[position + 1 : position + 10])
            sizes.append((left + w, top + h))
            position += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1  # + LZW minimum code size
            position = _skip_sub_blocks(data, position)
        elif block == 0x21:  # extension: its label, then data sub-blocks
            position = _skip_sub_blocks(data, position + 2)
        else:  # the trailer (0x3B) or bytes that are no GIF block
            break
    return sizes


def _skip_sub_blocks(data: bytes, position: int) -> int:
    """The position after the GIF data sub-blocks starting at ``position`` (each a length byte, 0 ends)."""
    while position < len(data) and data[position]:
        position += data[position] + 1
    return position + 1


def _jpeg_sizes(data: bytes) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in JPEG_STANDALONE:
            position += 2
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data follows, and every SOF came before it
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in JPEG_SOF and position + 9 <= len(data):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])  # after the precision byte
            sizes.append((width, height))
        position += 2 + length
    return sizes
