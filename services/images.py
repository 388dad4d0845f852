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
import contextlib
import enum
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

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

# sniff_image_type names we decode, with the Pillow plugin for each. Only these plugins (and
# MPO, which is how Pillow opens multi-picture camera JPEGs) may parse untrusted bytes: the
# rarely used ones (PSD, PCX, SGI, ...) are where parser bugs live, and users of a chat bot
# do not send those.
_KIND_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "avif": "AVIF",
}
_ALLOWED_FORMATS = (*_KIND_FORMATS.values(), "MPO")

_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

_QUALITIES = (85, 75, 65, 55, 45)
_DOWNSCALE_STEP = 0.7
_MIN_SIDE = 64
_WHITE = (255, 255, 255)


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
    from PIL import Image  # loaded with the first image: Pillow costs ~2 MB of RSS at start-up

    if max_side < 1 or max_bytes < 1 or max_pixels < 1:
        raise ValueError("max_side, max_bytes and max_pixels must be positive")
    if not data:
        raise ImageError(ImageProblem.CORRUPT, "empty file")
    kind = sniff_image_type(data)
    if kind is not None and _KIND_FORMATS.get(kind) not in _available_formats():
        raise ImageError(ImageProblem.UNSUPPORTED, f"{kind} is not supported")
    try:
        image = _decode(data, max_side=max_side, max_pixels=max_pixels, kind=kind)
        image = _to_rgb(_downscale(_normalize_mode(image), max_side))
        return _encode_within(image, max_bytes)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(ImageProblem.TOO_BIG, str(exc)) from exc
    except MemoryError as exc:
        raise ImageError(ImageProblem.TOO_BIG, "out of memory while decoding") from exc
    except Exception as exc:
        # Pillow's plugins report malformed input with a grab bag of types (OSError,
        # SyntaxError, ValueError, EOFError, struct.error, IndexError, ...): all mean "broken".
        raise ImageError(ImageProblem.CORRUPT, f"{type(exc).__name__}: {exc}") from exc


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


def _available_formats() -> list[str]:
    # Only names this Pillow build knows: an unknown name in `formats` is a KeyError, and
    # AVIF support depends on how Pillow was built.
    from PIL import Image

    Image.init()
    return [name for name in _ALLOWED_FORMATS if name in Image.OPEN]


def _open(data: bytes) -> Image.Image:
    from PIL import Image

    return Image.open(io.BytesIO(data), formats=_available_formats())


def _decode(data: bytes, *, max_side: int, max_pixels: int, kind: str | None) -> Image.Image:
    from PIL import Image

    try:
        probe = _open(data)
    except Image.UnidentifiedImageError as exc:
        # Pillow could not even parse the header: broken if the magic says it is a format we
        # decode (others were refused earlier), otherwise not an image we know (a PDF, a
        # video, random bytes).
        problem = ImageProblem.UNSUPPORTED if kind is None else ImageProblem.CORRUPT
        raise ImageError(problem, "not a recognised image") from exc
    with probe:
        # verify() catches damage load() may tolerate (PNG chunk CRCs), but leaves the
        # object unusable, hence the second open below.
        probe.verify()

    image = _open(data)
    width, height = image.size
    if max(width, height) > max_side:
        # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale straight from the DCT data: far
        # less memory and time for camera originals. The target keeps the aspect ratio so
        # the draft never ends up smaller than what the final resize needs.
        ratio = max_side / max(width, height)
        image.draft(None, (max(1, round(width * ratio)), max(1, round(height * ratio))))
    _check_pixels(image.size, max_pixels)
    image.load()
    return image


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(ImageProblem.CORRUPT, f"bad dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(ImageProblem.TOO_BIG, f"{width}x{height} exceeds {max_pixels} pixels")


def _normalize_mode(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to RGB, RGBA, L or LA, the modes resizing handles correctly."""
    from PIL import ImageOps

    # Malformed EXIF should cost the rotation, not the whole image.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_l(image)
    if mode in ("RGBa", "La"):  # premultiplied alpha
        return image.convert("RGBA" if mode == "RGBa" else "LA")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    # 16-bit grayscale (scans, medical/astro PNGs) would clip to white in a plain
    # convert("L"); map the format's nominal range to 0..255 instead, and fall back to the
    # actual range for values outside it (32-bit or float data of unknown scale).
    nominal = 65535.0 if image.mode.startswith("I;16") else None
    image = image.convert("F")
    low, high = (float(v) for v in image.getextrema())  # type: ignore[arg-type]
    if nominal is None:
        if low >= 0 and high <= 1:
            nominal = 1.0
        elif low >= 0 and high <= 255:
            nominal = 255.0
        elif low >= 0 and high <= 65535:
            nominal = 65535.0
    if nominal is not None:
        low = 0.0
    else:
        nominal = high - low if high > low else 1.0
    scale = 255.0 / nominal
    return image.point(lambda value: (value - low) * scale).convert("L")


def _downscale(image: Image.Image, max_side: int) -> Image.Image:
    from PIL import Image

    if max(image.size) > max_side:
        # Resized before flattening: RGBA/LA are resized with premultiplied alpha by Pillow,
        # and a smaller image is cheaper to flatten.
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    from PIL import Image

    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def _encode_within(image: Image.Image, max_bytes: int) -> bytes:
    from PIL import Image

    qualities = _QUALITIES
    while True:
        for quality in qualities:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        width, height = image.size
        if max(width, height) <= _MIN_SIDE:
            raise ImageError(ImageProblem.TOO_BIG, f"cannot fit a JPEG into {max_bytes} bytes")
        # Quality alone did not do it: shrink, and retry only the lower qualities so a
        # pathological image (noise) costs a bounded number of encodes.
        size = (max(1, int(width * _DOWNSCALE_STEP)), max(1, int(height * _DOWNSCALE_STEP)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        qualities = _QUALITIES[-2:]
