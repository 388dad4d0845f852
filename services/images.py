"""Turn whatever image a user sent into one JPEG a vision model will accept.

Users send Telegram photos (already JPEG), but also documents: PNG screenshots with alpha,
16-bit scans, animated GIF/WEBP stickers, 50 MP camera originals, HEIC from iPhones, and now
and then a file that only claims to be an image. Providers take JPEG/PNG/WEBP/GIF of a few MB;
normalising everything to one RGB JPEG of bounded size and side means a single code path
upstream and predictable prompt cost.

`prepare_image` is CPU-bound and synchronous on purpose: the caller decides where it runs
(`prepare_image_async` runs it in a worker thread). On bad input it raises `ImageError` and
nothing else, so a handler can answer with one message per `ImageProblem`.
"""

from __future__ import annotations

import asyncio
import base64
import enum

__all__ = [
    "MAX_DOWNLOAD",
    "ImageError",
    "ImageProblem",
    "prepare_image",
    "prepare_image_async",
    "sniff_image_type",
    "to_data_url",
]

MAX_DOWNLOAD = 20 * 1024 * 1024
"""Telegram's getFile limit: check `file_size` against this before downloading."""

# Decoded pixels we are willing to hold in memory for one image. A 50 MP RGBA bitmap is
# 200 MB, so this (not the file size: a 40 kB PNG can declare 1e10 pixels) bounds memory.
# JPEGs are counted after draft mode (decoding at 1/2..1/8 scale), so big camera originals
# still pass.
DEFAULT_MAX_PIXELS = 50_000_000

_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


class ImageProblem(enum.StrEnum):
    TOO_BIG = "too_big"  # more pixels than we decode, or cannot be squeezed under max_bytes
    UNSUPPORTED = "unsupported"  # not an image, or a format we do not decode (HEIC, PDF, ...)
    CORRUPT = "corrupt"  # looks like a supported image but does not decode (truncated, broken)


class ImageError(Exception):
    """The only exception `prepare_image` raises for bad input; `problem` says which kind."""

    problem: ImageProblem

    def __init__(self, problem: ImageProblem, detail: str = "") -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)


def sniff_image_type(data: bytes) -> str | None:
    """Name the image format from magic bytes: "jpeg", "png", "webp", "gif", "bmp", "tiff",
    "heic" (any HEIF), "avif", or None. Cheap; used to tell "not supported" from "broken"
    and to pick a user-facing message before any decoding."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF, BigTIFF
        return "tiff"
    # "BM" alone is too weak; the DIB header that follows has one of a few fixed sizes.
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    if data[4:8] == b"ftyp":
        return _sniff_isobmff(data)
    return None


def _sniff_isobmff(data: bytes) -> str | None:
    # The ftyp box lists a major brand and compatible brands; "mif1" is generic HEIF, so an
    # AVIF is recognised by its own brand anywhere in the list.
    box_size = int.from_bytes(data[:4], "big")
    end = min(max(box_size, 16), len(data), 256)
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & {b"avif", b"avis"}:
        return "avif"
    if brands & {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}:
        return "heic"
    return None


def prepare_image(
    data: bytes,
    *,
    max_side: int = 2048,
    max_bytes: int = 4 * 1024 * 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """Decode, validate and re-encode `data` as an RGB JPEG.

    EXIF orientation is applied (phones store portraits sideways), alpha is flattened on
    white (transparent screenshots would otherwise turn black), the longest side is brought
    down to `max_side`, and quality steps down from 85 (then the size, if it must) until the
    JPEG fits `max_bytes`. `max_bytes` counts raw JPEG bytes; a data URL is 4/3 of that.
    Metadata is not copied, so GPS positions in camera EXIF never reach the provider.
    Animated images contribute their first frame.

    Raises ImageError (and nothing else) for any input bytes.
    """
    if max_side < 1 or max_bytes < 1 or max_pixels < 1:
        raise ValueError("max_side, max_bytes and max_pixels must be positive")
    if not data:
        raise ImageError(ImageProblem.CORRUPT, "empty file")
    # Pillow is imported with the first image, not at start-up: it is ~2 MB of RSS.
    from services import image_codec

    return image_codec.reencode(
        data,
        kind=sniff_image_type(data),
        max_side=max_side,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
    )


async def prepare_image_async(
    data: bytes,
    *,
    max_side: int = 2048,
    max_bytes: int = 4 * 1024 * 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """`prepare_image` in a worker thread: decoding a large photo takes tens to hundreds of
    milliseconds, which would stall every other chat if done on the event loop."""
    return await asyncio.to_thread(
        prepare_image, data, max_side=max_side, max_bytes=max_bytes, max_pixels=max_pixels
    )


def to_data_url(jpeg: bytes) -> str:
    """`data:image/jpeg;base64,...` for an OpenAI-style `image_url` content part."""
    if sniff_image_type(jpeg) != "jpeg":
        # A mislabelled payload is rejected by some providers with an opaque 400; fail here.
        raise ValueError("to_data_url expects JPEG bytes (use prepare_image first)")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
