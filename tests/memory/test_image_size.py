"""`memory.recall.image_size`: the pixel size from the header of real files of each format
(written by Pillow, which the test extras install with matplotlib), and None for anything else."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from memory.recall.image_size import HEADER_BYTES, base64_image_size, image_size


def _encode(fmt: str, size: tuple[int, int], **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt, options", [
    ("PNG", {}), ("GIF", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("WEBP", {"lossless": True}), ("WEBP", {"quality": 50}), ("WEBP", {"exif": b"Exif\x00\x00" + b"\x00" * 64}),
])
@pytest.mark.parametrize("size", [(1, 1), (640, 480), (333, 2001), (4000, 17)])
def test_every_format_gives_its_size(fmt: str, options: dict[str, object], size: tuple[int, int]) -> None:
    data = _encode(fmt, size, **options)
    assert image_size(data) == size
    assert base64_image_size(base64.b64encode(data).decode()) == size


def test_a_jpeg_frame_header_after_a_large_exif_segment() -> None:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: pushes the frame header 60 kB in
    data = _encode("JPEG", (1200, 900), exif=exif.tobytes())
    assert data.find(b"\xff\xc0") > 60_000
    assert image_size(data) == (1200, 900)
    assert base64_image_size(base64.b64encode(data).decode()) == (1200, 900)


def test_only_the_header_is_decoded_and_base64_may_wrap() -> None:
    data = _encode("PNG", (300, 200)) + b"\x00" * (HEADER_BYTES * 3)
    wrapped = "\n".join(base64.b64encode(data).decode()[i:i + 76] for i in range(0, 400, 76))
    assert base64_image_size(wrapped) == (300, 200)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\xe0\x00\x10JFIF",
                                  b"GIF89a\x00\x00\x00\x00", b"RIFF\x00\x00\x00\x00WEBPVP8Z" + b"\x00" * 20])
def test_anything_else_is_none(data: bytes) -> None:
    assert image_size(data) is None


def test_invalid_base64_is_none() -> None:
    assert base64_image_size("!!!! not base64 ****") is None
