"""The pixel size of an image from its first bytes: PNG, JPEG, GIF and WebP headers, read by hand
(no imaging library). Providers bill an image by its size, so a prompt's token count needs it.

    image_size(data) -> (width, height) | None     # None: not one of the four, or cut short
    base64_image_size(text) -> (width, height) | None
"""

from __future__ import annotations

import base64
import binascii
import struct

__all__ = ["image_size", "base64_image_size", "HEADER_BYTES"]

# Enough of the file to reach a JPEG's frame header past EXIF and ICC segments in practice.
HEADER_BYTES = 256 * 1024
_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (every SOFn but DHT C4, JPG C8 and DAC CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in _SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xD9 or marker == 0xDA:  # end of image, or the scan began without a frame header
            return None
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels of a PNG, JPEG, GIF or WebP image from its first bytes, or None."""
    size: tuple[int, int] | None = None
    if data.startswith(_PNG) and len(data) >= 24 and data[12:16] == b"IHDR":
        size = struct.unpack(">II", data[16:24])
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        size = struct.unpack("<HH", data[6:10])
    elif data.startswith(b"\xff\xd8"):
        size = _jpeg(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = _webp(data)
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


def base64_image_size(text: str) -> tuple[int, int] | None:
    """`image_size` of base64 image data (only its first `HEADER_BYTES` are decoded)."""
    head = "".join(text[: HEADER_BYTES * 4 // 3 + 8].split())
    head = head[: len(head) - len(head) % 4]
    try:
        return image_size(base64.b64decode(head))
    except (binascii.Error, ValueError):
        return None
