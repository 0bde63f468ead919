"""Image bytes: what format they are, how big, and whether they are whole, from the headers alone.

Decoding every pixel of every image would dominate the run; a structural walk of the JPEG markers or
the PNG chunks finds the size and catches a half-copied file at a fraction of the cost.
"""
from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Optional, Tuple

from transforms.model import Rejection

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_LOSSLESS_SOF_MARKERS = frozenset([0xC3, 0xC7, 0xCB, 0xCF])
_STANDALONE_MARKERS = frozenset([0x01, 0xD8]) | frozenset(range(0xD0, 0xD8))
_EXIF_ORIENTATION_TAG = 0x0112
# TensorFlow's decode_jpeg refuses an image whose decoded bytes (height x width x 1 or 3) reach 2^29.
TF_JPEG_MAX_BYTES = 1 << 29
# libpng's default user limit, which TensorFlow's decode_png keeps: wider or higher PNGs are refused.
PNG_MAX_SIDE = 1_000_000

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
            # libjpeg (TensorFlow's decoder, and Pillow's) skips stray bytes before a marker with a warning.
            position = data.find(b"\xff", position)
            if position == -1:
                raise ImageProblem("image_truncated", "JPEG ends inside its headers")
            continue
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
    output_bytes = width * height * (1 if channels == 1 else 3)
    if output_bytes >= TF_JPEG_MAX_BYTES:
        raise ImageProblem(
            "image_too_large",
            f"{width}x{height} JPEG decodes to {output_bytes} bytes; TensorFlow's decode_jpeg refuses 2^29 or more",
        )
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
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_PALETTE = 3


@dataclasses.dataclass(frozen=True)
class PngLayout:
    """Where a PNG's chunks that matter for its pixels are, once its structure passed libpng's rules."""

    header: bytes  # the IHDR chunk's 13 data bytes
    chunks: Tuple[Tuple[bytes, int, int], ...]  # (type, start, end) of every chunk up to IEND, in order


def png_layout(data: bytes) -> PngLayout:
    """Walk a PNG's chunks as libpng (TensorFlow's decode_png) reads them; ImageProblem for what it refuses.

    libpng stops with an error (so TensorFlow cannot decode the image) on: a chunk before IHDR, a second
    IHDR, an IHDR that is not 13 valid bytes, a bad CRC in a critical chunk (IHDR, PLTE, IDAT, IEND), an
    unknown critical chunk, a chunk type that is not four letters, a palette image without a PLTE before
    its IDAT, a second PLTE, a palette PLTE whose length is not 3 to 768 in steps of 3, no IDAT, a file that
    ends before IEND, and a side over its 1,000,000-pixel limit. An ancillary chunk with a bad CRC is only
    discarded with a warning, and so are other ancillary oddities; anything after IEND is never read.
    Image data running short inside the first run of IDAT chunks is only seen by decompressing it.
    """
    position, header, chunks = len(PNG_SIGNATURE), None, []
    palette = idat = False
    view = memoryview(data)  # CRCs over the chunks without copying them
    while True:
        if position + 12 > len(data):
            raise ImageProblem("image_truncated", "PNG ends before its IEND chunk (cut short?)")
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        name = chunk_type.decode("latin-1")
        end = position + 12 + length
        if length > 0x7FFFFFFF or not chunk_type.isalpha():
            raise ImageProblem("image_corrupt", f"PNG chunk at byte {position} has an invalid length or type {name!r}")
        if end > len(data):
            raise ImageProblem("image_truncated", f"PNG ends inside its {name} chunk")
        critical = not chunk_type[0] & 0x20
        chunks.append((chunk_type, position, end))
        if header is None and chunk_type != b"IHDR":
            raise ImageProblem("image_corrupt", f"PNG's first chunk is {name}, not IHDR")
        if zlib.crc32(view[position + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            if critical:
                raise ImageProblem("image_corrupt", f"PNG {name} chunk at byte {position} fails its CRC check")
            position = end  # libpng discards it with a warning
            continue
        chunk_data = data[position + 8 : end - 4]
        if chunk_type == b"IHDR":
            if header is not None:
                raise ImageProblem("image_corrupt", "PNG has a second IHDR chunk")
            header = _png_header(chunk_data)
        elif chunk_type == b"PLTE":
            if palette:
                raise ImageProblem("image_corrupt", "PNG has a second PLTE chunk")
            palette = True
            if header[9] == _PNG_PALETTE and (length == 0 or length % 3 or length > 768):
                raise ImageProblem("image_corrupt", f"palette PNG's PLTE chunk is {length} bytes")
        elif chunk_type == b"IDAT":
            if header[9] == _PNG_PALETTE and not palette:
                raise ImageProblem("image_corrupt", "palette PNG has no PLTE chunk before its image data")
            idat = True
        elif chunk_type == b"IEND":
            if not idat:
                raise ImageProblem("image_corrupt", "PNG has no IDAT chunk")
            return PngLayout(header, tuple(chunks))
        elif critical:
            raise ImageProblem("image_corrupt", f"PNG has an unknown critical chunk {name}")
        position = end


def _png_header(header: bytes) -> bytes:
    if len(header) != 13:
        raise ImageProblem("image_corrupt", f"PNG's IHDR chunk is {len(header)} bytes, not 13")
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, compression, filtering, interlace = header[8:13]
    if width == 0 or height == 0:
        raise ImageProblem("image_corrupt", "PNG is 0 pixels wide or high")
    if width > PNG_MAX_SIDE or height > PNG_MAX_SIDE:
        raise ImageProblem(
            "image_too_large", f"{width}x{height} PNG: libpng (TensorFlow's decode_png) refuses sides over {PNG_MAX_SIDE}"
        )
    if depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering or interlace > 1:
        raise ImageProblem(
            "image_corrupt", f"PNG's IHDR is invalid (bit depth {depth}, colour type {colour}, "
            f"compression {compression}, filter {filtering}, interlace {interlace})"
        )
    return header


def png_pixel_stream(data: bytes, layout: PngLayout) -> bytes:
    """The PNG reduced to what libpng needs for the pixels: IHDR, a palette's PLTE, the first run of IDAT
    chunks (libpng reads no further for image data) and IEND. Decoding it judges the pixel data as libpng
    does without tripping over ancillary chunks libpng only warns about (a bad CRC in tEXt, say)."""
    parts = [PNG_SIGNATURE, _png_chunk(b"IHDR", layout.header)]
    run = "before"
    for chunk_type, start, end in layout.chunks:
        if chunk_type == b"IDAT" and run != "after":
            run = "inside"
            parts.append(data[start:end])
        elif chunk_type != b"IDAT" and run == "inside":
            run = "after"
        if chunk_type == b"PLTE" and layout.header[9] == _PNG_PALETTE:
            parts.append(data[start:end])
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


def _png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + chunk_type + body + zlib.crc32(chunk_type + body).to_bytes(4, "big")


def _probe_png(data: bytes) -> ImageInfo:
    header = png_layout(data).header
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    return ImageInfo("png", width, height, _PNG_CHANNELS[header[9]])


_GIF_BLOCK = re.compile(rb"[!,;]")


def gif_canvas(data: bytes) -> Tuple[int, int]:
    """The pixels a GIF can make a decoder allocate: its logical screen grown to every frame's extent.

    Pillow allocates the screen size (a 35-byte GIF can declare 65535x65535) and grows it to a frame
    that reaches beyond it, so both are read from the headers before anything is decoded. Bytes that are
    no block are skipped as Pillow skips them; a file cut short ends the walk.
    """
    if len(data) < 13:
        raise ImageProblem("image_truncated", "GIF ends inside its header")
    width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    position = 13 + _gif_color_table(data[10])
    while position < len(data):
        block = data[position : position + 1]
        if block == b";":
            break
        if block == b",":  # image descriptor: left, top, width, height, flags
            if position + 10 > len(data):
                break
            left, top, frame_width, frame_height = (
                int.from_bytes(data[position + offset : position + offset + 2], "little") for offset in (1, 3, 5, 7)
            )
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            position = _skip_gif_sub_blocks(data, position + 10 + _gif_color_table(data[position + 9]) + 1)
        elif block == b"!":  # extension: a label, then sub-blocks
            position = _skip_gif_sub_blocks(data, position + 2)
        else:
            found = _GIF_BLOCK.search(data, position + 1)
            if found is None:
                break
            position = found.start()
    return width, height


def _gif_color_table(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _skip_gif_sub_blocks(data: bytes, position: int) -> int:
    while position < len(data):
        size = data[position]
        position += 1 + size
        if size == 0:
            break
    return position


def webp_canvas(data: bytes) -> Tuple[int, int]:
    """A WebP's canvas size from its first chunk (VP8X, VP8L or VP8), read before Pillow opens it:
    Pillow's open() already makes libwebp allocate the whole canvas."""
    chunk, body = data[12:16], data[20:30]
    if chunk == b"VP8X" and len(body) >= 10:
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
    raise ImageProblem("image_corrupt", f"WebP starts with no VP8X, VP8L or VP8 chunk ({chunk!r})")


def bmp_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Width and height from a BMP's info header (the 12-byte OS/2 one or the 40-byte-and-longer ones)."""
    header = int.from_bytes(data[14:18], "little")
    if header == 12 and len(data) >= 22:
        return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
    if header >= 40 and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)  # negative: stored top-down
        return abs(width), abs(height)
    return None


def tiff_size(data: bytes) -> Optional[Tuple[int, int]]:
    """ImageWidth and ImageLength of a TIFF's first IFD, the page Pillow decodes; None if unreadable."""
    order = "little" if data[:2] == b"II" else "big"
    offset = int.from_bytes(data[4:8], order)
    if offset + 2 > len(data):
        return None
    sizes = {}
    for entry in range(int.from_bytes(data[offset : offset + 2], order)):
        start = offset + 2 + 12 * entry
        if start + 12 > len(data):
            break
        tag, kind = int.from_bytes(data[start : start + 2], order), int.from_bytes(data[start + 2 : start + 4], order)
        if tag in (256, 257) and kind in (3, 4):  # SHORT or LONG
            sizes[tag] = int.from_bytes(data[start + 8 : start + (10 if kind == 3 else 12)], order)
    return (sizes[256], sizes[257]) if len(sizes) == 2 else None


def declared_size(data: bytes, kind: str) -> Optional[Tuple[int, int]]:
    """The pixels a decoder of a GIF, WebP, BMP or TIFF allocates, from the headers alone (None where
    they cannot be read here; Pillow's open() then reports the size, still before any decoding)."""
    reader = {"gif": gif_canvas, "webp": webp_canvas, "bmp": bmp_size, "tiff": tiff_size}[kind]
    return reader(data)
