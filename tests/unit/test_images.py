from __future__ import annotations

import asyncio
import base64
import io
import random
import struct
import threading
import warnings
import zlib

import pytest
from PIL import Image, features

from services import images
from services.images import (
    MAX_DOWNLOAD,
    ImageError,
    ImageProblem,
    prepare_image,
    prepare_image_async,
    sniff_image_type,
    to_data_url,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close_to(pixel: object, expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def photo(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Something with detail, so JPEG sizes behave like a real photo's."""
    return Image.radial_gradient("L").resize(size).convert("RGB")


def png_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG that declares width×height but carries almost no data:
    the shape of a decompression bomb, without building one in memory."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # four rows of zeros, the rest missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_jpeg(data: bytes, *, max_side: int = 2048) -> Image.Image:
    assert data[:3] == b"\xff\xd8\xff"
    image = decode(data)
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert max(image.size) <= max_side
    return image


# --- sniffing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JPEG", "jpeg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("GIF", "gif"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
    ],
)
def test_sniff_recognises_pillow_output(fmt: str, expected: str) -> None:
    assert sniff_image_type(encode(photo((16, 16)), fmt)) == expected


def test_sniff_recognises_heif_family_and_avif_by_brand() -> None:
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    generic_heif = struct.pack(">I", 20) + b"ftypmif1" + b"\x00\x00\x00\x00" + b"mif1"
    avif = struct.pack(">I", 28) + b"ftypavif" + b"\x00\x00\x00\x00" + b"avifmif1miaf"
    avif_minor = struct.pack(">I", 24) + b"ftypmif1" + b"\x00\x00\x00\x00" + b"mif1avif"
    mp4 = struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"
    assert sniff_image_type(heic) == "heic"
    assert sniff_image_type(generic_heif) == "heic"
    assert sniff_image_type(avif) == "avif"
    assert sniff_image_type(avif_minor) == "avif"
    assert sniff_image_type(mp4) is None


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xd8", b"BM", b"BMP is not enough", b"%PDF-1.7\n", b"hello world" * 3]
)
def test_sniff_returns_none_for_non_images(data: bytes) -> None:
    assert sniff_image_type(data) is None


# --- happy paths ------------------------------------------------------------------------


def test_png_alpha_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))  # transparent black: not black!
    image.paste((255, 0, 0, 255), (100, 0, 200, 100))  # opaque red right half
    out = assert_jpeg(prepare_image(encode(image, "PNG")))
    assert out.size == (200, 100)
    assert close_to(out.getpixel((40, 50)), WHITE)
    assert close_to(out.getpixel((160, 50)), RED)


def test_palette_transparency_and_la_are_flattened_on_white() -> None:
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0] * 256)
    gray_alpha = Image.new("LA", (40, 40), (0, 0))
    for data in (encode(palette, "PNG", transparency=0), encode(gray_alpha, "PNG")):
        assert close_to(assert_jpeg(prepare_image(data)).getpixel((20, 20)), WHITE)


def test_huge_jpeg_is_downscaled_keeping_aspect_ratio() -> None:
    data = encode(photo((6000, 4000)), "JPEG", quality=92)
    out = assert_jpeg(prepare_image(data))
    assert out.size == (2048, 1365)
    small = assert_jpeg(prepare_image(data, max_side=512), max_side=512)
    assert small.size == (512, 341)


def test_exif_orientation_is_applied() -> None:
    # Stored landscape, left half red; Orientation 6 means "rotate 90° clockwise to view",
    # which puts the red half on top of a portrait image.
    image = Image.new("RGB", (200, 100), BLUE)
    image.paste(RED, (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = assert_jpeg(prepare_image(encode(image, "JPEG", exif=exif, quality=95)))
    assert out.size == (100, 200)
    assert close_to(out.getpixel((50, 40)), RED, 30)
    assert close_to(out.getpixel((50, 160)), BLUE, 30)


def test_metadata_is_not_forwarded() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {2: (55.0, 45.0, 0.0)}  # GPSInfo: where the user lives
    data = encode(photo(), "JPEG", exif=exif.tobytes())
    assert decode(data).getexif()
    out = prepare_image(data)
    assert not decode(out).getexif()
    assert b"PhoneMaker" not in out


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("WEBP", {"quality": 80}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("JPEG", {"progressive": True}),
    ],
)
def test_other_formats_become_jpeg(fmt: str, options: dict[str, object]) -> None:
    out = assert_jpeg(prepare_image(encode(photo((300, 200)), fmt, **options)))
    assert out.size == (300, 200)


def test_webp_with_alpha() -> None:
    image = Image.new("RGBA", (64, 64), (0, 0, 255, 0))
    out = assert_jpeg(prepare_image(encode(image, "WEBP", lossless=True)))
    assert close_to(out.getpixel((32, 32)), WHITE)


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif_becomes_jpeg() -> None:
    assert assert_jpeg(prepare_image(encode(photo((120, 80)), "AVIF"))).size == (120, 80)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_contributes_its_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (60, 40), color) for color in (RED, BLUE, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    assert close_to(assert_jpeg(prepare_image(data)).getpixel((30, 20)), RED, 20)


def test_sixteen_bit_grayscale_keeps_its_brightness() -> None:
    data = encode(Image.new("I;16", (50, 40), 32768), "PNG")  # half of 65535
    pixel = assert_jpeg(prepare_image(data)).getpixel((25, 20))
    assert close_to(pixel, (128, 128, 128), 3)  # a naive convert("L") would clip to white


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG")
    assert close_to(assert_jpeg(prepare_image(data)).getpixel((20, 20)), RED)


def test_small_jpeg_is_reencoded_not_upscaled() -> None:
    out = assert_jpeg(prepare_image(encode(photo((64, 48)), "JPEG")))
    assert out.size == (64, 48)


def test_quality_then_size_step_down_until_it_fits() -> None:
    rng = random.Random(3)
    noise = Image.frombytes("RGB", (800, 800), rng.randbytes(800 * 800 * 3))
    data = encode(noise, "PNG")
    for limit in (400_000, 60_000):
        out = prepare_image(data, max_bytes=limit)
        assert len(out) <= limit
        assert_jpeg(out)
    assert decode(prepare_image(data, max_bytes=400_000)).size == (800, 800)  # quality did it
    assert max(decode(prepare_image(data, max_bytes=60_000)).size) < 800  # needed a resize


def test_impossible_byte_budget_is_too_big() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(encode(photo(), "PNG"), max_bytes=100)
    assert info.value.problem is ImageProblem.TOO_BIG


# --- bad input --------------------------------------------------------------------------


def problem_of(data: bytes, **options: int) -> ImageProblem:
    with pytest.raises(ImageError) as info:
        prepare_image(data, **options)
    return info.value.problem


def test_truncated_files_are_corrupt() -> None:
    jpeg = encode(photo(), "JPEG")
    png = encode(photo(), "PNG")
    assert problem_of(jpeg[: len(jpeg) // 2]) is ImageProblem.CORRUPT
    assert problem_of(png[: len(png) // 2]) is ImageProblem.CORRUPT
    assert problem_of(png[:12]) is ImageProblem.CORRUPT  # magic intact, header cut


def test_png_with_bad_checksum_is_corrupt() -> None:
    png = bytearray(encode(photo(), "PNG"))
    png[png.index(b"IDAT") + 10] ^= 0xFF  # compressed pixel data; the chunk CRC now fails
    assert problem_of(bytes(png)) is ImageProblem.CORRUPT


def test_empty_and_random_bytes() -> None:
    assert problem_of(b"") is ImageProblem.CORRUPT
    assert problem_of(random.Random(1).randbytes(5000)) is ImageProblem.UNSUPPORTED
    assert problem_of(b"%PDF-1.7\n" + b"0" * 500) is ImageProblem.UNSUPPORTED


def test_heic_and_formats_outside_the_allowlist_are_unsupported() -> None:
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00" * 4 + b"mif1heic" + b"\x00" * 100
    assert problem_of(heic) is ImageProblem.UNSUPPORTED
    for fmt in ("ICO", "PCX", "TGA", "PDF"):  # Pillow reads these; we do not let it
        assert problem_of(encode(photo((32, 32)), fmt)) is ImageProblem.UNSUPPORTED, fmt


def test_avif_is_unsupported_when_pillow_lacks_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    avif = struct.pack(">I", 28) + b"ftypavif" + b"\x00" * 4 + b"avifmif1miaf" + b"\x00" * 100
    Image.init()
    if "AVIF" in Image.OPEN:
        assert problem_of(avif) is ImageProblem.CORRUPT  # a header and nothing else
        monkeypatch.delitem(Image.OPEN, "AVIF")
    assert problem_of(avif) is ImageProblem.UNSUPPORTED


def test_decompression_bomb_headers_are_too_big() -> None:
    # Far above Pillow's own limit: DecompressionBombError from Image.open.
    assert problem_of(png_header(100_000, 100_000)) is ImageProblem.TOO_BIG
    # Below Pillow's hard limit but above ours: refused before a single row is decoded.
    assert problem_of(png_header(8_000, 8_000)) is ImageProblem.TOO_BIG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert problem_of(png_header(10_000, 10_000)) is ImageProblem.TOO_BIG


def test_jpeg_declaring_absurd_dimensions_is_too_big() -> None:
    jpeg = bytearray(encode(photo((64, 48)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)  # height, width
    assert problem_of(bytes(jpeg)) is ImageProblem.TOO_BIG


def test_pixel_budget_counts_jpeg_after_draft_decoding() -> None:
    big = photo((3000, 2000))
    # A PNG must be decoded in full: 6 MP is over a 1 MP budget.
    assert problem_of(encode(big, "PNG"), max_pixels=1_000_000) is ImageProblem.TOO_BIG
    # A JPEG decodes at 1/4 scale for a 512 px target (750×500), which fits the budget.
    out = prepare_image(encode(big, "JPEG"), max_side=512, max_pixels=1_000_000)
    assert assert_jpeg(out, max_side=512).size == (512, 341)


def test_fuzzed_inputs_raise_only_image_error() -> None:
    rng = random.Random(20240601)
    base = photo((96, 64))
    rgba = base.convert("RGBA")
    rgba.putalpha(160)
    exif = Image.Exif()
    exif[0x0112] = 8
    samples = [
        encode(base, "JPEG", exif=exif),
        encode(base, "JPEG", progressive=True),
        encode(rgba, "PNG"),
        encode(rgba, "WEBP"),
        encode(base.convert("P"), "GIF", save_all=True, append_images=[base.convert("P")]),
        encode(base, "BMP"),
        encode(base, "TIFF", compression="tiff_lzw"),
        encode(Image.new("I;16", (40, 30), 999), "PNG"),
    ]
    blobs = [rng.randbytes(rng.randint(0, 3000)) for _ in range(300)]
    for sample in samples:
        step = max(1, len(sample) // 60)
        blobs.extend(sample[:cut] for cut in range(0, len(sample), step))
        for _ in range(60):
            mutated = bytearray(sample)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            blobs.append(bytes(mutated))
        # A valid header followed by garbage.
        blobs.append(sample[:32] + rng.randbytes(500))

    outcomes: dict[str, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF/truncated chunks
        for blob in blobs:
            try:
                out = prepare_image(blob, max_side=256)
            except ImageError as exc:
                assert isinstance(exc.problem, ImageProblem)
                outcomes[exc.problem] = outcomes.get(exc.problem, 0) + 1
            else:
                assert_jpeg(out, max_side=256)
                outcomes["ok"] = outcomes.get("ok", 0) + 1
    # The corpus really exercised both the decoders' error paths and the success path.
    assert outcomes.get(ImageProblem.CORRUPT, 0) > 50
    assert outcomes.get(ImageProblem.UNSUPPORTED, 0) > 50
    assert outcomes.get("ok", 0) > 20


def test_image_error_carries_problem_and_detail() -> None:
    error = ImageError(ImageProblem.CORRUPT, "truncated")
    assert error.problem is ImageProblem.CORRUPT
    assert "corrupt" in str(error) and "truncated" in str(error)
    assert ImageProblem.TOO_BIG == "too_big"


def test_bad_parameters_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        prepare_image(b"x", max_side=0)
    with pytest.raises(ValueError):
        prepare_image(b"x", max_bytes=0)


# --- async wrapper and data URL --------------------------------------------------------


async def test_prepare_image_async_runs_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[int] = []
    real = images.prepare_image

    def spy(data: bytes, **options: int) -> bytes:
        threads.append(threading.get_ident())
        return real(data, **options)

    monkeypatch.setattr(images, "prepare_image", spy)
    data = encode(photo((900, 600)), "PNG")
    out = await prepare_image_async(data, max_side=300)
    assert threads and threads[0] != threading.get_ident()
    assert assert_jpeg(out, max_side=300).size == (300, 200)
    with pytest.raises(ImageError):
        await prepare_image_async(b"not an image")


async def test_concurrent_async_preparations_are_independent() -> None:
    sizes = [(100 + 37 * i, 80 + 11 * i) for i in range(8)]
    inputs = [encode(photo(size), "PNG" if i % 2 else "JPEG") for i, size in enumerate(sizes)]
    outputs = await asyncio.gather(*(prepare_image_async(data) for data in inputs))
    assert [assert_jpeg(out).size for out in outputs] == sizes


def test_to_data_url_round_trips() -> None:
    jpeg = prepare_image(encode(photo((32, 32)), "PNG"))
    url = to_data_url(jpeg)
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    assert base64.b64decode(url[len(prefix) :]) == jpeg


def test_to_data_url_refuses_non_jpeg() -> None:
    with pytest.raises(ValueError):
        to_data_url(encode(photo((8, 8)), "PNG"))


def test_max_download_is_telegrams_limit() -> None:
    assert MAX_DOWNLOAD == 20 * 1024 * 1024
