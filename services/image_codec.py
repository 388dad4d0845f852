"""The Pillow side of `services.images`: decode, normalise and re-encode one image.

Kept apart so that Pillow (about 2 MB of RSS) is imported with the first image a user sends,
not when the bot starts; `services.images.prepare_image` is the entry point.
"""

from __future__ import annotations

import contextlib
import io

from PIL import Image, ImageOps, UnidentifiedImageError

from services.images import ImageError, ImageProblem

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

_QUALITIES = (85, 75, 65, 55, 45)
_DOWNSCALE_STEP = 0.7
_MIN_SIDE = 64
_WHITE = (255, 255, 255)


def reencode(
    data: bytes, *, kind: str | None, max_side: int, max_bytes: int, max_pixels: int
) -> bytes:
    """`prepare_image`'s decoding and encoding (see there); `kind` is from sniff_image_type."""
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


def _available_formats() -> list[str]:
    # Only names this Pillow build knows: an unknown name in `formats` is a KeyError, and
    # AVIF support depends on how Pillow was built.
    Image.init()
    return [name for name in _ALLOWED_FORMATS if name in Image.OPEN]


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=_available_formats())


def _decode(data: bytes, *, max_side: int, max_pixels: int, kind: str | None) -> Image.Image:
    try:
        probe = _open(data)
    except UnidentifiedImageError as exc:
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
    if max(image.size) > max_side:
        # Resized before flattening: RGBA/LA are resized with premultiplied alpha by Pillow,
        # and a smaller image is cheaper to flatten.
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def _encode_within(image: Image.Image, max_bytes: int) -> bytes:
    qualities: tuple[int, ...] = _QUALITIES
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
        smaller = (max(1, int(width * _DOWNSCALE_STEP)), max(1, int(height * _DOWNSCALE_STEP)))
        image = image.resize(smaller, Image.Resampling.LANCZOS)
        qualities = _QUALITIES[-2:]
