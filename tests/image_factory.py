"""Real image files of every kind the policy names, made with Pillow (from real photos where it matters)."""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, 255 - x], axis=2)
    image = Image.fromarray(rgb).convert(mode)
    if mode in ("RGBA", "LA"):  # real transparency, not an opaque alpha channel an encoder may drop
        image.putalpha(Image.fromarray(np.maximum(y, 32)))
    return image


def jpeg_with_orientation(photo: bytes, orientation: int) -> bytes:
    image = Image.open(io.BytesIO(photo))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def cmyk_jpeg(photo: bytes) -> bytes:
    return encode(Image.open(io.BytesIO(photo)).convert("CMYK"), "JPEG", quality=90)


def ycck_jpeg(photo: bytes) -> bytes:
    """A CMYK JPEG relabelled YCCK (Adobe transform 2), which Pillow cannot write directly."""
    data = bytearray(cmyk_jpeg(photo))
    adobe = data.find(b"Adobe")
    data[adobe + 11] = 2  # the Adobe segment's transform byte
    return bytes(data)


def png16(width: int = 40, height: int = 30) -> bytes:
    values = (np.arange(width * height, dtype=np.uint32).reshape(height, width) * 53 % 65536).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def animated_gif() -> bytes:
    frames = [gradient(), gradient().transpose(Image.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_claiming_size(width: int, height: int) -> bytes:
    """A structurally whole PNG whose header claims a huge size (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_with_undefined_quantization_table(photo: bytes) -> bytes:
    """Every marker in place and an end-of-image marker, but a frame that names a table nobody defined:
    the structure check passes, only a full decode can tell."""
    data = bytearray(photo)
    position = 2
    while True:
        marker, length = data[position + 1], int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            first_component = position + 4 + 6
            data[first_component + 2] = 3  # quantization table 3
            return bytes(data)
        position += 2 + length
