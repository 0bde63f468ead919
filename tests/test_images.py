"""transforms/images/probe.py: format, size, channels and orientation from the headers; broken files refused."""
import io
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests import image_factory as make
from transforms.images.probe import (
    JPEG_SIGNATURE,
    PNG_SIGNATURE,
    ImageInfo,
    ImageProblem,
    declared_size,
    gif_canvas,
    png_layout,
    png_pixel_stream,
    probe_image,
    sniff_format,
)
from transforms.model import ITEM_IMAGE, Rejection



def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _problem(data: bytes) -> ImageProblem:
    with pytest.raises(ImageProblem) as raised:
        probe_image(data)
    return raised.value


def test_the_raccoon_dataset_is_there(raccoon):
    # Tests that need the shared datasets must fail, not skip, when they are missing in CI (the fixture).
    assert len(list((raccoon / "images").glob("*.jpg"))) == 200


def test_every_raccoon_jpeg_has_pils_size_and_band_count(raccoon):
    for path in sorted((raccoon / "images").glob("*.jpg")):
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            expected = ImageInfo("jpeg", image.width, image.height, len(image.getbands()), 1)
        assert probe_image(data) == expected, path.name


def test_grayscale_raccoon_jpeg_has_one_channel(raccoon):
    data = (raccoon / "images" / "raccoon-150.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L"
        size = image.size
    assert probe_image(data) == ImageInfo("jpeg", size[0], size[1], 1, 1)


@pytest.mark.parametrize("name", ["raccoon-1.jpg", "raccoon-150.jpg", "raccoon-200.jpg"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_jpeg_cut_short_is_truncated(raccoon, name, keep):
    data = (raccoon / "images" / name).read_bytes()
    problem = _problem(data[: int(len(data) * keep)])
    assert problem.reason == "image_truncated"


def test_jpeg_missing_only_its_last_byte_is_truncated(raccoon):
    data = (raccoon / "images" / "raccoon-1.jpg").read_bytes()
    assert _problem(data[:-1]).reason == "image_truncated"


def test_empty_bytes_are_image_empty():
    assert _problem(b"").reason == "image_empty"


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 4,
        b"not an image at all",
        b"\x00" * 100,
        b"<annotation/>",
        b"\xff\xd8",  # a JPEG SOI alone is not the three-byte signature
        b"\x89PNG\r\n",  # a PNG signature cut short
    ],
)
def test_unrecognized_bytes_are_not_an_image(data):
    problem = _problem(data)
    assert problem.reason == "image_not_an_image"
    assert data[:8].hex() in problem.detail


def test_problem_becomes_an_image_rejection():
    rejection = _problem(b"").rejection("images/a.jpg")
    assert rejection == Rejection("images/a.jpg", "image_empty", "the file is empty", ITEM_IMAGE)


@pytest.mark.parametrize(
    "mode, channels",
    [("RGB", 3), ("RGBA", 4), ("L", 1), ("LA", 2), ("I;16", 1)],
)
def test_png_made_by_pillow_has_its_size_and_channels(mode, channels):
    image = Image.new("RGB", (37, 23), (10, 200, 30)).convert(mode)
    data = _encode(image, "PNG")
    assert probe_image(data) == ImageInfo("png", 37, 23, channels, 1)


def test_palette_png_is_png_with_its_size():
    image = Image.new("RGB", (64, 9), (10, 200, 30)).convert("P")
    info = probe_image(_encode(image, "PNG"))
    assert (info.format, info.width, info.height, info.orientation) == ("png", 64, 9, 1)


def test_png_behind_a_jpg_name_is_png():
    # The format comes from the bytes: sniff_format never sees a file name.
    data = _encode(Image.new("RGB", (5, 6)), "PNG")
    assert sniff_format(data) == "png"
    assert probe_image(data).format == "png"


@pytest.mark.parametrize("keep", [0.5, 0.95, 10, 30])
def test_png_cut_short_is_truncated(keep):
    image = Image.effect_noise((64, 64), 50).convert("RGB")  # noise: a long IDAT
    data = _encode(image, "PNG")
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    assert _problem(data[:cut]).reason == "image_truncated"


def test_png_missing_its_iend_chunk_is_truncated():
    data = _encode(Image.new("RGB", (5, 6)), "PNG")
    assert data.endswith(b"IEND\xaeB`\x82")
    assert _problem(data[:-12]).reason == "image_truncated"


def test_png_without_ihdr_is_corrupt():
    iend = struct.pack(">I", 0) + b"IEND" + b"\xaeB`\x82"
    assert _problem(PNG_SIGNATURE + iend).reason == "image_corrupt"


@pytest.mark.parametrize(
    "fmt, kind",
    [("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tiff"), ("WEBP", "webp")],
)
def test_other_formats_are_unsupported(fmt, kind):
    data = _encode(Image.new("RGB", (8, 8), (1, 2, 3)), fmt)
    assert sniff_format(data) == kind
    problem = _problem(data)
    assert problem.reason == "image_unsupported_format"
    assert kind in problem.detail


def test_cmyk_and_progressive_jpegs_report_size_and_components():
    image = Image.new("RGB", (41, 17), (1, 2, 3))
    assert probe_image(_encode(image.convert("CMYK"), "JPEG")) == ImageInfo("jpeg", 41, 17, 4, 1)
    progressive = _encode(image, "JPEG", progressive=True)
    assert b"\xff\xc2" in progressive  # SOF2
    assert probe_image(progressive) == ImageInfo("jpeg", 41, 17, 3, 1)


def _segments(data: bytes):
    """(marker, whole segment bytes) of a JPEG's header, up to its SOS."""
    position = 2
    while True:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        yield marker, data[position : position + 2 + length]
        if marker == 0xDA:
            return
        position += 2 + length


def test_huffman_table_before_the_frame_header_is_not_taken_for_a_frame():
    data = _encode(Image.new("RGB", (41, 17), (1, 2, 3)), "JPEG")
    dht = next(segment for marker, segment in _segments(data) if marker == 0xC4)
    moved = data[:2] + dht + data[2:]  # a second copy of a DHT, first in the file: still valid
    with Image.open(io.BytesIO(moved)) as image:
        assert image.size == (41, 17)
    assert probe_image(moved) == ImageInfo("jpeg", 41, 17, 3, 1)


def test_fill_bytes_before_a_marker_are_skipped():
    data = _encode(Image.new("L", (9, 4)), "JPEG")
    padded = data[:2] + b"\xff\xff\xff" + data[2:]
    assert probe_image(padded) == ImageInfo("jpeg", 9, 4, 1, 1)


def test_jpeg_that_ends_before_any_scan_is_corrupt():
    assert _problem(JPEG_SIGNATURE[:2] + b"\xff\xd9" + b"\x00" * 8).reason == "image_corrupt"


def test_jpeg_without_frame_header_is_corrupt():
    data = _encode(Image.new("RGB", (8, 8)), "JPEG")
    without_sof = b"".join(
        segment for marker, segment in _segments(data) if marker not in (0xC0, 0xC2)
    )
    rest = data[len(b"".join(segment for _, segment in _segments(data))) + 2 :]
    assert _problem(data[:2] + without_sof + rest).reason == "image_corrupt"


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_written_by_pillow_is_read(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.new("RGB", (40, 30), (200, 10, 10)), "JPEG", exif=exif)
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif()[0x0112] == orientation
    # Width and height are the stored (unrotated) ones; applying the tag is the writer's business.
    assert probe_image(data) == ImageInfo("jpeg", 40, 30, 3, orientation)


def _app1_exif(order: bytes, orientation: int, extra_entries: int = 0) -> bytes:
    endian = "<" if order == b"II" else ">"
    entries = [struct.pack(endian + "HHIHH", 0x010F, 2, 4, 0, 0)] * extra_entries  # Make, ASCII
    entries.append(struct.pack(endian + "HHIHH", 0x0112, 3, 1, orientation, 0))
    ifd = struct.pack(endian + "H", len(entries)) + b"".join(entries) + b"\x00" * 4
    tiff = order + struct.pack(endian + "HI", 42, 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


@pytest.mark.parametrize("order", [b"II", b"MM"])
def test_exif_orientation_in_either_byte_order_after_other_tags(order):
    plain = _encode(Image.new("RGB", (12, 7)), "JPEG")
    data = plain[:2] + _app1_exif(order, 6, extra_entries=3) + plain[2:]
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif()[0x0112] == 6
    assert probe_image(data) == ImageInfo("jpeg", 12, 7, 3, 6)


@pytest.mark.parametrize("orientation", [0, 9, 0xFFFF])
def test_out_of_range_exif_orientation_reads_as_1(orientation):
    plain = _encode(Image.new("RGB", (12, 7)), "JPEG")
    data = plain[:2] + _app1_exif(b"II", orientation) + plain[2:]
    assert probe_image(data).orientation == 1


def test_raccoon_photo_with_exif_orientation_added_keeps_its_size(raccoon):
    data = (raccoon / "images" / "raccoon-1.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        size = image.size
    tagged = data[:2] + _app1_exif(b"MM", 8) + data[2:]
    assert probe_image(tagged) == ImageInfo("jpeg", size[0], size[1], 3, 8)


# --- libpng's chunk rules, libjpeg's tolerance, and sizes from the headers of the converted formats ---


@pytest.mark.parametrize(
    "name, reason, words",
    [
        ("png_duplicate_ihdr", "image_corrupt", "second IHDR"),
        ("png_bad_ihdr_crc", "image_corrupt", "IHDR chunk at byte 8 fails its CRC"),
        ("png_bad_idat_crc", "image_corrupt", "IDAT chunk"),
        ("png_bad_iend_crc", "image_corrupt", "IEND chunk"),
        ("png_palette_without_plte", "image_corrupt", "no PLTE"),
        ("png_palette_plte_after_idat", "image_corrupt", "no PLTE chunk before its image data"),
        ("png_duplicate_plte", "image_corrupt", "second PLTE"),
        ("png_text_before_ihdr", "image_corrupt", "first chunk is tEXt"),
        ("png_no_idat", "image_corrupt", "no IDAT"),
        ("png_unknown_critical_chunk", "image_corrupt", "unknown critical chunk ABCD"),
        ("png_invalid_chunk_type", "image_corrupt", "invalid length or type"),
        ("png_ihdr_14_bytes", "image_corrupt", "14 bytes"),
        ("png_missing_iend", "image_truncated", "IEND"),
        ("png_wider_than_libpng_allows", "image_too_large", "1000001x1"),
    ],
)
def test_png_chunks_are_walked_by_libpngs_rules(name, reason, words):
    problem = _problem(make.damaged_pngs()[name])
    assert problem.reason == reason and words in problem.detail


@pytest.mark.parametrize("name", ["png_bad_ancillary_crc", "png_rgb_plte_bad_length", "png_garbage_after_iend", "png_iend_with_data"])
def test_what_libpng_only_warns_about_passes(name):
    assert probe_image(make.damaged_pngs()[name]).format == "png"


def test_the_pixel_stream_keeps_only_what_libpng_reads_for_pixels():
    data = make.damaged_pngs()["png_bad_ancillary_crc"]
    stream = png_pixel_stream(data, png_layout(data))
    assert [kind for kind, _ in make.png_chunks(stream)] == [b"IHDR", b"IDAT", b"IEND"]
    split = make.damaged_pngs()["png_idat_split_by_another_chunk"]
    assert len(png_pixel_stream(split, png_layout(split))) < len(split) - 100  # the second IDAT run is left out


def test_stray_bytes_before_a_jpeg_marker_are_skipped_as_libjpeg_skips_them():
    data = _encode(Image.new("RGB", (9, 4)), "JPEG")
    at = data.find(b"\xff\xdb")
    assert probe_image(data[:at] + b"junk" + data[at:]) == ImageInfo("jpeg", 9, 4, 3, 1)


def test_jpeg_over_tensorflows_decoded_size_limit_is_too_large():
    data = bytearray(_encode(Image.new("RGB", (16, 16)), "JPEG"))
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = (9000).to_bytes(2, "big") + (20000).to_bytes(2, "big")  # 540 MB as RGB
    assert _problem(bytes(data)).reason == "image_too_large"
    data[frame + 7 : frame + 9] = (19000).to_bytes(2, "big")  # 513 MB: TensorFlow still decodes it
    assert probe_image(bytes(data)).width == 19000


@pytest.mark.parametrize(
    "kind, data, size",
    [
        ("gif", make.gif_bomb(13000, 12000), (13000, 12000)),
        ("gif", make.gif_bomb(5, 5, ((0, 0, 5, 5), (100, 50, 7, 9))), (107, 59)),
        ("webp", make.webp_bomb(300, 200), (300, 200)),
        ("webp", _encode(Image.new("RGB", (30, 20)), "WEBP", lossless=True), (30, 20)),  # VP8L
        ("webp", _encode(Image.new("RGB", (30, 20)), "WEBP", quality=50), (30, 20)),  # VP8
        ("bmp", make.bmp_bomb(20000, 30000), (20000, 30000)),
        ("tiff", make.tiff_bomb(20000, 30000), (20000, 30000)),
    ],
)
def test_declared_size_comes_from_the_headers(kind, data, size):
    assert declared_size(data, kind) == size


@given(st.binary(max_size=200))
def test_gif_walk_of_arbitrary_bytes_gives_a_size_or_image_problem(rest):
    try:
        width, height = gif_canvas(b"GIF89a" + rest)
    except ImageProblem:
        return
    assert width >= 0 and height >= 0


# --- properties: any bytes give an ImageInfo or an ImageProblem, nothing else ---------------------

_REASONS = {"image_empty", "image_not_an_image", "image_unsupported_format", "image_truncated", "image_corrupt", "image_too_large"}


def _check_probe(data: bytes):
    try:
        info = probe_image(data)
    except ImageProblem as problem:
        assert problem.reason in _REASONS
        assert isinstance(problem.detail, str)
        return
    assert isinstance(info, ImageInfo)
    assert info.format in ("jpeg", "png")
    assert info.width > 0 and info.height > 0
    assert 1 <= info.orientation <= 8


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_image_problem(data):
    _check_probe(data)


@given(st.sampled_from([JPEG_SIGNATURE, PNG_SIGNATURE]), st.binary(max_size=512))
def test_signature_then_arbitrary_bytes_never_raise_anything_but_image_problem(signature, rest):
    _check_probe(signature + rest)


_SMALL_JPEG = _encode(Image.new("RGB", (8, 8), (9, 9, 9)), "JPEG", exif=Image.Exif())
_SMALL_PNG = _encode(Image.new("RGBA", (8, 8)), "PNG")


@given(
    st.sampled_from([_SMALL_JPEG, _SMALL_PNG]),
    st.data(),
)
def test_damaged_real_images_never_raise_anything_but_image_problem(original, data):
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    _check_probe(bytes(damaged[:cut]))
