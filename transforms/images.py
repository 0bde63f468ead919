"""Image bytes: what format they are, how big, and whether they are whole, from the headers alone.

Decoding every pixel of every image would dominate the run; a structural walk of the JPEG markers or
the PNG chunks finds the size and catches a half-copied file at a fraction of the cost.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from transforms.model import Rejection

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_LOSSLESS_SOF_MARKERS = frozenset([0xC3, 0xC7, 0xCB, 0xCF])
_STANDALONE_MARKERS = frozenset([0x01, 0xD8]) | frozenset(range(0xD0, 0xD8))
_EXIF_ORIENTATION_TAG = 0x0112

_OTHER_SIGNATURES = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    format: str  # "jpeg" or "png": what TensorFlow's decoders read as they are
    width: int
    height: int
    channels: int
    orientation: int = 1  # EXIF orientation tag, 1 when absent


class ImageProblem(Exception):
    """Why bytes are not a usable image; `reason` is the stable code reported in rejected.jsonl."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def rejection(self, source: str) -> Rejection:
        return Rejection(source, self.reason, self.detail)


def sniff_format(data: bytes) -> Optional[str]:
    """The image format the bytes say they are, whatever the file name claims."""
    if data.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def probe_image(data: bytes) -> ImageInfo:
    """Format, size and orientation of JPEG or PNG bytes; raises ImageProblem when they are unusable.

    Other image formats raise image_unsupported_format here; image_prep converts them first.
    """
    if not data:
        raise ImageProblem("image_empty", "the file is empty")
    kind = sniff_format(data)
    if kind == "jpeg":
        return _probe_jpeg(data)
    if kind == "png":
        return _probe_png(data)
    if kind is None:
        raise ImageProblem("image_not_an_image", f"unrecognized bytes {data[:8].hex()}")
    raise ImageProblem("image_unsupported_format", f"{kind} images are not supported yet")


def _probe_jpeg(data: bytes) -> ImageInfo:
    position, size, orientation = 2, None, 1
    while True:
        if position + 4 > len(data):
            raise ImageProblem("image_truncated", "JPEG ends inside its headers")
        if data[position] != 0xFF:
            raise ImageProblem("image_corrupt", f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker == 0xD9:
            raise ImageProblem("image_corrupt", "JPEG ends before any image data")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment_end = position + 2 + length
        if length < 2 or segment_end > len(data):
            raise ImageProblem("image_truncated", "JPEG ends inside its headers")
        segment = data[position + 4 : segment_end]
        if marker in _SOF_MARKERS and len(segment) >= 6:
            if marker in _LOSSLESS_SOF_MARKERS or segment[0] != 8:
                # TensorFlow's decoder (and Pillow) read only 8-bit lossy JPEG: there is nothing to convert from.
                raise ImageProblem("image_unsupported_format", f"{segment[0]}-bit or lossless JPEG cannot be decoded")
            height = int.from_bytes(segment[1:3], "big")
            width = int.from_bytes(segment[3:5], "big")
            size = (width, height, segment[5])
        elif marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
        elif marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        position = segment_end
    if size is None or size[0] == 0 or size[1] == 0:
        raise ImageProblem("image_corrupt", "JPEG has no usable frame header")
    # Entropy-coded data escapes every 0xFF, so any FFD9 after the scan starts is a real end; searching
    # from the back finds it at once instead of scanning the whole image.
    if data.rfind(b"\xff\xd9", segment_end) == -1:
        raise ImageProblem("image_truncated", "JPEG has no end-of-image marker (cut short?)")
    width, height, channels = size
    return ImageInfo("jpeg", width, height, channels, orientation)


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of an EXIF block's first IFD; 1 when it is absent or unreadable."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    offset = int.from_bytes(tiff[4:8], order)
    if offset + 2 > len(tiff):
        return 1
    count = int.from_bytes(tiff[offset : offset + 2], order)
    for entry in range(count):
        start = offset + 2 + 12 * entry
        if start + 12 > len(tiff):
            break
        if int.from_bytes(tiff[start : start + 2], order) == _EXIF_ORIENTATION_TAG:
            value = int.from_bytes(tiff[start + 8 : start + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # by colour type: grey, RGB, palette (expanded), grey+alpha, RGBA


def _probe_png(data: bytes) -> ImageInfo:
    position, header = len(PNG_SIGNATURE), None
    while True:
        if position + 12 > len(data):
            raise ImageProblem("image_truncated", "PNG ends before its IEND chunk (cut short?)")
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        if position + 12 + length > len(data):
            raise ImageProblem("image_truncated", f"PNG ends inside its {chunk_type!r} chunk")
        if chunk_type == b"IHDR" and length >= 13:
            header = data[position + 8 : position + 8 + 13]
        if chunk_type == b"IEND":
            break
        position += 12 + length
    if header is None:
        raise ImageProblem("image_corrupt", "PNG has no IHDR chunk")
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    if width == 0 or height == 0:
        raise ImageProblem("image_corrupt", "PNG is 0 pixels wide or high")
    return ImageInfo("png", width, height, _PNG_CHANNELS.get(header[9], 0))
