"""prepare_image: what passes through unchanged, what is converted once, what is refused."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from tests import image_factory as make
from transforms.images.prep import EXIF_APPLY, EXIF_IGNORE, VALIDATE_FULL, VALIDATE_STRUCTURE, prepare_image
from transforms.images.probe import ImageProblem


@pytest.fixture(scope="module")
def photo(raccoon) -> bytes:
    return (raccoon / "images" / "raccoon-1.jpg").read_bytes()  # 650 x 417, RGB


def _pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    "name, data_factory, fmt, channels",
    [
        ("grayscale jpeg", lambda: make.encode(make.gradient(mode="L"), "JPEG"), "jpeg", 1),
        ("rgb png", lambda: make.encode(make.gradient(), "PNG"), "png", 3),
        ("rgba png", lambda: make.encode(make.gradient(mode="RGBA"), "PNG"), "png", 4),
        ("palette png", lambda: make.encode(make.gradient(mode="P"), "PNG"), "png", 3),
        ("grey+alpha png", lambda: make.encode(make.gradient(mode="LA"), "PNG"), "png", 2),
        ("16-bit png", lambda: make.png16(64, 48), "png", 1),
    ],
)
def test_tensorflow_readable_images_pass_through_unchanged(name, data_factory, fmt, channels):
    data = data_factory()
    prepared = prepare_image(data)
    assert prepared.encoded is data and prepared.conversion is None
    assert (prepared.info.format, prepared.info.width, prepared.info.height) == (fmt, 64, 48)
    assert prepared.info.channels == channels


@pytest.mark.parametrize("convert", [make.cmyk_jpeg, make.ycck_jpeg])
def test_cmyk_and_ycck_jpeg_pass_through(photo, convert):
    data = convert(photo)
    prepared = prepare_image(data)
    assert prepared.encoded is data and prepared.info.channels == 4 and prepared.conversion is None


@pytest.mark.parametrize(
    "fmt, mode, conversion, target",
    [
        ("BMP", "RGB", "bmp_to_jpeg", "jpeg"),
        ("TIFF", "RGB", "tiff_to_jpeg", "jpeg"),
        ("WEBP", "RGB", "webp_to_jpeg", "jpeg"),
        ("TIFF", "RGBA", "tiff_to_png", "png"),
        ("WEBP", "RGBA", "webp_to_png", "png"),
        ("BMP", "L", "bmp_to_jpeg", "jpeg"),
    ],
)
def test_other_formats_are_converted_once(fmt, mode, conversion, target):
    source = make.gradient(mode=mode)
    prepared = prepare_image(make.encode(source, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert prepared.conversion == conversion
    assert prepared.info.format == target and (prepared.info.width, prepared.info.height) == (64, 48)
    decoded = _pixels(prepared.encoded)
    assert decoded.format == target.upper()
    reference = source.convert("RGBA" if target == "png" else decoded.mode)
    difference = max(abs(a - b) for a, b in zip(decoded.tobytes(), reference.tobytes()))
    assert difference <= (0 if target == "png" else 16)  # JPEG at quality 95: close, not equal


def test_animated_gif_becomes_its_first_frame():
    prepared = prepare_image(make.animated_gif())
    assert prepared.conversion == "gif_to_jpeg"
    first = make.gradient()
    decoded = _pixels(prepared.encoded).convert("RGB")
    assert decoded.getpixel((2, 2))[0] < 60 and decoded.getpixel((61, 2))[0] > 190  # not the mirrored frame
    assert decoded.size == first.size


def test_16_bit_tiff_is_scaled_to_8_bits():
    image = Image.fromarray(__import__("numpy").full((10, 12), 40000, dtype="uint16"))
    prepared = prepare_image(make.encode(image, "TIFF"))
    assert prepared.conversion == "tiff_to_jpeg"
    assert abs(_pixels(prepared.encoded).getpixel((5, 5)) - 40000 // 256) <= 2


@pytest.mark.parametrize("orientation, size", [(6, (417, 650)), (8, (417, 650)), (3, (650, 417)), (2, (650, 417))])
def test_exif_orientation_is_applied(photo, orientation, size):
    data = make.jpeg_with_orientation(photo, orientation)
    prepared = prepare_image(data)
    assert (prepared.conversion, prepared.exif) == ("exif_rotated", "applied")
    assert (prepared.info.width, prepared.info.height) == size
    assert prepared.info.orientation == 1  # the tag is gone: nobody rotates twice
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    got = _pixels(prepared.encoded).convert("RGB")
    assert got.size == upright.size
    assert abs(got.getpixel((10, 10))[0] - upright.getpixel((10, 10))[0]) <= 12


def test_exif_auto_keeps_raw_pixels_when_the_annotation_states_the_stored_size(photo):
    data = make.jpeg_with_orientation(photo, 6)
    prepared = prepare_image(data, annotated_size=(650, 417))
    assert prepared.encoded is data and prepared.exif == "kept_raw" and prepared.conversion is None
    assert (prepared.info.width, prepared.info.height) == (650, 417)


def test_exif_modes_apply_and_ignore(photo):
    data = make.jpeg_with_orientation(photo, 6)
    assert prepare_image(data, annotated_size=(650, 417), exif_mode=EXIF_APPLY).exif == "applied"
    ignored = prepare_image(data, exif_mode=EXIF_IGNORE)
    assert ignored.encoded is data and ignored.exif is None


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "image_empty"),
        (b"GIF89a" + b"\x00" * 20, "image_corrupt"),
        (b"BM" + b"\x00" * 30, "image_corrupt"),
        (make.png_claiming_size(30000, 30000), "image_too_large"),
    ],
)
def test_refused(data, reason):
    with pytest.raises(ImageProblem) as problem:
        prepare_image(data)
    assert problem.value.reason == reason


def test_full_validation_catches_what_the_structure_check_cannot(photo):
    broken = make.jpeg_with_undefined_quantization_table(photo)
    assert prepare_image(broken).encoded is broken  # headers and end marker are fine
    with pytest.raises(ImageProblem) as problem:
        prepare_image(broken, validate=VALIDATE_FULL)
    assert problem.value.reason == "image_corrupt"
    assert prepare_image(photo, validate=VALIDATE_FULL).encoded is photo


# --- judged as TensorFlow's decoders judge: libpng and libjpeg-turbo's rules, on damaged real files ------

# Damage that lives in the chunk structure, which libpng refuses: found without decoding, in structure mode too.
_STRUCTURAL = {
    "png_duplicate_ihdr", "png_bad_ihdr_crc", "png_bad_idat_crc", "png_bad_iend_crc", "png_cut_inside_idat",
    "png_missing_iend", "png_palette_without_plte", "png_palette_plte_after_idat", "png_palette_plte_bad_length",
    "png_duplicate_plte", "png_idat_before_ihdr", "png_text_before_ihdr", "png_no_idat",
    "png_unknown_critical_chunk", "png_invalid_chunk_type", "png_ihdr_14_bytes", "png_ihdr_bad_depth",
    "png_bad_crc_idat_after_the_image_data", "png_wider_than_libpng_allows",
    "jpeg_truncated_mid_scan", "jpeg_progressive_cut_after_3_scans", "jpeg_without_eoi",
}


@pytest.fixture(scope="module")
def damaged(photo):
    return {**make.damaged_pngs(), **make.damaged_jpegs(photo)}


def _verdict(data: bytes, validate: str):
    try:
        prepare_image(data, validate=validate, max_pixels=2_000_000)
        return "decodes"
    except ImageProblem as problem:
        return problem.reason


def test_full_validation_agrees_with_tensorflows_decoders_on_every_damaged_file(damaged):
    """Our full-mode verdict is exactly whether tf.io.decode_image decodes the bytes, for every file.

    No deliberate exception is needed here: CMYK and YCCK JPEG pass through (TensorFlow decodes them to
    RGB), and what only makes libpng or libjpeg warn (a bad CRC in an ancillary chunk, a PLTE of odd length
    in an RGB PNG, data after IEND or EOI, stray bytes before a JPEG marker) is accepted by both."""
    import tensorflow as tf

    disagreements = []
    for name, data in sorted(damaged.items()):
        try:
            tf.io.decode_image(data, expand_animations=False)
            tensorflow = "decodes"
        except (tf.errors.InvalidArgumentError, tf.errors.OpError):
            tensorflow = "refused"
        ours = _verdict(data, VALIDATE_FULL)
        if (ours == "decodes") != (tensorflow == "decodes"):
            disagreements.append(f"{name}: TensorFlow {tensorflow}, we say {ours}")
    assert disagreements == []


def test_structure_mode_refuses_what_libpng_refuses_in_the_chunks(damaged):
    wrongly_passed = [name for name in sorted(_STRUCTURAL) if _verdict(damaged[name], VALIDATE_STRUCTURE) == "decodes"]
    assert wrongly_passed == []
    assert _verdict(damaged["png_bad_ancillary_crc"], VALIDATE_STRUCTURE) == "decodes"  # libpng drops that chunk
    problem = _verdict(damaged["png_duplicate_ihdr"], VALIDATE_STRUCTURE)
    assert problem == "image_corrupt"


def test_the_chunk_walk_costs_little_next_to_a_decode():
    """Structure mode checks every chunk's CRC: measured, about a third of a millisecond per megabyte."""
    import time

    data = make.encode(Image.effect_noise((1024, 1024), 60).convert("RGB"), "PNG")  # ~3 MB of noise
    start = time.perf_counter()
    for _ in range(5):
        prepare_image(data)
    walk = (time.perf_counter() - start) / 5
    start = time.perf_counter()
    prepare_image(data, validate=VALIDATE_FULL)
    full = time.perf_counter() - start
    assert walk < full / 3, (walk, full)
