"""From the bytes on disk to the bytes in the record: pass through, or convert once, with a reason.

JPEG and PNG bytes go into records unchanged: TensorFlow decodes every colour type of them (CMYK and
YCCK JPEG, 16-bit, palette and alpha PNG) as 1 or 3 channels. Other formats (BMP, GIF, TIFF, WebP)
are converted once, to JPEG, or to PNG where there is transparency, since OD API readers expect one
of those two. The one other reason to re-encode is an EXIF orientation that has to be applied:
TensorFlow's decoders ignore the tag, so boxes drawn on the upright photo would land on the wrong
pixels.
"""
from __future__ import annotations

import dataclasses
import io
import warnings
from typing import Optional, Tuple

from transforms.images.probe import (
    ImageInfo,
    ImageProblem,
    declared_size,
    png_layout,
    png_pixel_stream,
    probe_image,
    sniff_format,
)

EXIF_AUTO, EXIF_APPLY, EXIF_IGNORE = "auto", "apply", "ignore"
EXIF_MODES = (EXIF_AUTO, EXIF_APPLY, EXIF_IGNORE)
VALIDATE_STRUCTURE, VALIDATE_FULL = "structure", "full"
VALIDATE_MODES = (VALIDATE_STRUCTURE, VALIDATE_FULL)

DEFAULT_MAX_PIXELS = 100_000_000  # --max_pixels: decoding more would cost gigabytes; refused, not attempted
JPEG_QUALITY = 95
_CONVERTIBLE = ("bmp", "gif", "tiff", "webp")
_TURNED = (5, 6, 7, 8)  # orientations that swap width and height
_PILLOW_WARNING_SILENCED = False


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    encoded: bytes
    info: ImageInfo
    conversion: Optional[str] = None  # why the bytes were re-encoded, e.g. "bmp_to_jpeg", "exif_rotated"
    exif: Optional[str] = None  # "applied" or "kept_raw" when the source had a non-trivial orientation


def prepare_image(
    data: bytes,
    annotated_size: Optional[Tuple[int, int]] = None,
    exif_mode: str = EXIF_AUTO,
    validate: str = VALIDATE_STRUCTURE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PreparedImage:
    """The record's image bytes and what they decode to; raises ImageProblem for unusable bytes.

    The pixel count is always taken from the headers and checked against max_pixels before a decoder
    sees the bytes, so a decompression bomb costs nothing.
    """
    kind = sniff_format(data) if data else None
    if kind in _CONVERTIBLE:
        return _convert(data, kind, max_pixels)
    info = probe_image(data)  # empty, unknown, truncated or corrupt bytes are refused here
    _check_pixels(info.width, info.height, max_pixels)
    if validate == VALIDATE_FULL:
        _decode_fully(data, info.format, max_pixels)
    if info.orientation == 1 or exif_mode == EXIF_IGNORE:
        return PreparedImage(data, info)
    raw_size = (info.width, info.height)
    if exif_mode == EXIF_AUTO and info.orientation in _TURNED and annotated_size == raw_size:
        # The annotation states the stored, unrotated size: its tool showed raw pixels (old LabelImg did).
        return PreparedImage(data, info, exif="kept_raw")
    return _rotate_upright(data, info, max_pixels)


def decode_like_tensorflow(data: bytes, max_pixels: Optional[int] = None) -> ImageInfo:
    """What TensorFlow's decode_image makes of JPEG or PNG bytes: their ImageInfo, or ImageProblem where
    it fails. The header rules of libpng and libjpeg-turbo (TensorFlow's decoders) are applied by
    probe_image; the pixel data is then decoded by Pillow, which uses libjpeg-turbo too, and for PNG is
    given only the chunks libpng reads for pixels (ancillary chunks libpng only warns about are left out).
    """
    info = probe_image(data)
    if max_pixels is not None:
        _check_pixels(info.width, info.height, max_pixels)
    _decode_fully(data, info.format, max_pixels)
    return info


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageProblem(
            "image_too_large", f"{width}x{height} is {width * height} pixels, more than --max_pixels {max_pixels}"
        )


def _pillow(max_pixels: Optional[int]):
    """PIL.Image, with its own decompression-bomb limit no lower than --max_pixels.

    Every size is checked against max_pixels from the headers before Pillow opens the bytes, so Pillow's
    check is a second, coarser one: left at its default (89 M pixels warned about, 179 M refused) it would
    warn about every admitted image above 89 M pixels, and refuse images the user allowed. The limit is
    only ever raised, to the largest max_pixels asked for in this process. Its warning is silenced once
    for the process (a warnings filter, not catch_warnings, which is not thread-safe): an image that
    large is refused here with its own reason, or was admitted by the user's --max_pixels.
    """
    global _PILLOW_WARNING_SILENCED
    from PIL import Image

    if not _PILLOW_WARNING_SILENCED:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _PILLOW_WARNING_SILENCED = True
    if max_pixels is not None and Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    return Image


def _pillow_problem(error: Exception, what: str) -> ImageProblem:
    from PIL import Image

    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageProblem("image_too_large", f"{error}"[:200])
    return ImageProblem("image_corrupt", f"{what}: {error}"[:200])


def _open(data: bytes, max_pixels: int):
    Image = _pillow(max_pixels)
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as error:
        raise _pillow_problem(error, "cannot open") from None
    _check_pixels(image.width, image.height, max_pixels)
    return image


def _decode_fully(data: bytes, kind: str, max_pixels: Optional[int] = None) -> None:
    """Decode every pixel; PNG as libpng would see it (see decode_like_tensorflow)."""
    Image = _pillow(max_pixels)
    if kind == "png":
        data = png_pixel_stream(data, png_layout(data))
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as error:
        raise _pillow_problem(error, f"{kind} does not decode") from None


def _encode(image, conversion: str) -> PreparedImage:
    """JPEG, or PNG when the image has transparency; 16-bit and float pixels scaled to 8 bits."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    target = "png" if has_alpha else "jpeg"
    if target == "png":
        image = image.convert("RGBA")
    elif image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if target == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    encoded = buffer.getvalue()
    return PreparedImage(encoded, probe_image(encoded), conversion=f"{conversion}_to_{target}")


def _convert(data: bytes, kind: str, max_pixels: int) -> PreparedImage:
    from PIL import ImageOps

    # From the headers first: for a GIF the logical screen grown to every frame (Pillow allocates that),
    # for a WebP the canvas (Pillow's open() already has libwebp allocate it), and so that a size over
    # Pillow's own limit is reported as ours, with its width and height.
    size = declared_size(data, kind)
    if size is not None:
        _check_pixels(*size, max_pixels)
    image = _open(data, max_pixels)  # reads the headers only; its size is checked again
    try:
        image.seek(0)  # the first frame of an animation
        image.load()
        upright = ImageOps.exif_transpose(image)
    except Exception as error:
        raise _pillow_problem(error, f"{kind} does not decode") from None
    return _encode(upright, kind)


def _rotate_upright(data: bytes, info: ImageInfo, max_pixels: int) -> PreparedImage:
    from PIL import ImageOps

    image = _open(data, max_pixels)
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as error:
        raise _pillow_problem(error, f"{info.format} does not decode") from None
    prepared = _encode(upright, "exif_rotated")
    return dataclasses.replace(prepared, conversion="exif_rotated", exif="applied")
